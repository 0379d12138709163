"""The `deployflow` command as a user runs it: a subprocess against a real local runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployflow.local.backend import LocalPlatform
from deployflow.local.client import LocalRuntimeClient
from deployflow.platform.claims import CLAIM_TAG, claim, release
from tests.airflow_support import local_connection
from tests.runtime.support import REPO, SAMPLE_MODEL, RuntimeProcess, deploy, sample_runtime

pytestmark = pytest.mark.slow
ENDPOINT = "cli"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RuntimeProcess, LocalRuntimeClient]]:
    with sample_runtime(tmp_path_factory.mktemp("cli") / "data") as (runtime, client):
        client.put_endpoint(ENDPOINT)
        deploy(client, ENDPOINT, "blue")
        deploy(client, ENDPOINT, "green")
        client.set_traffic(ENDPOINT, {"blue": 100})
        yield runtime, client


def cli(runtime: RuntimeProcess, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m deployflow_cli ARGS`` with the runtime's URL and token given as a user would."""
    options = ["--control-url", runtime.control_url, "--token-file", str(runtime.data_dir / "admin-token")]
    command = [*args[:2], *options, *args[2:]] if args[0] == "endpoints" else [args[0], *options, *args[1:]]
    environment = {**os.environ, "PYTHONPATH": str(REPO / "plugins"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "deployflow_cli", *command], capture_output=True, text=True, env=environment, timeout=120
    )


def as_json(done: subprocess.CompletedProcess[str]) -> object:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_endpoints_list_and_show_never_print_keys(runtime) -> None:
    process, client = runtime
    keys = client.keys(ENDPOINT)
    listed = as_json(cli(process, "endpoints", "list", "--json"))
    [row] = [e for e in listed if e["name"] == ENDPOINT]
    assert row["traffic"] == {"blue": 100}
    assert row["scoring_uri"].endswith(f"/endpoints/{ENDPOINT}/score")
    shown = as_json(cli(process, "endpoints", "show", ENDPOINT, "--json"))
    assert [d["name"] for d in shown["deployments"]] == ["blue", "green"]
    assert shown["deployments"][0]["model"] == "diabetes:1"
    assert shown["deployments"][0]["provisioning_state"] == "Succeeded"
    table = cli(process, "endpoints", "show", ENDPOINT)
    assert table.returncode == 0 and "blue=100" in table.stdout and "diabetes:1" in table.stdout
    platform = LocalPlatform(process.control_url, (process.data_dir / "admin-token").read_text().strip())
    claim(platform, ENDPOINT, "realtime_deployment/run-7", compute=None)
    try:
        claimed = cli(process, "endpoints", "show", ENDPOINT)
        assert f"{CLAIM_TAG}=realtime_deployment/run-7" in claimed.stdout, "the run that holds it is shown"
    finally:
        release(platform, ENDPOINT, "realtime_deployment/run-7")
        platform.close()
    for output in (json.dumps(listed), json.dumps(shown), table.stdout):
        assert keys["primary_key"] not in output and keys["secondary_key"] not in output


def test_keys_prints_the_keys(runtime) -> None:
    process, client = runtime
    assert as_json(cli(process, "keys", ENDPOINT, "--json")) == client.keys(ENDPOINT)


def test_invoke_answers_like_the_sample_and_fails_on_a_4xx(runtime, tmp_path: Path) -> None:
    process, _ = runtime
    expected = json.loads((SAMPLE_MODEL / "sample-response.json").read_text())
    answer = as_json(cli(process, "invoke", ENDPOINT, "--file", str(SAMPLE_MODEL / "sample-request.json"), "--json"))
    assert answer == pytest.approx(expected)
    pinned = cli(
        process, "invoke", ENDPOINT, "--deployment", "green", "--file", str(SAMPLE_MODEL / "sample-request.json")
    )
    assert pinned.returncode == 0 and json.loads(pinned.stdout) == pytest.approx(expected)
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": []}')
    failed = cli(process, "invoke", ENDPOINT, "--file", str(bad))
    assert failed.returncode == 1
    assert "answered HTTP 400" in failed.stderr and "data" in failed.stderr


def test_logs_show_the_deployments_server_log(runtime) -> None:
    process, _ = runtime
    done = cli(process, "logs", ENDPOINT, "blue", "--lines", "50")
    assert done.returncode == 0, done.stderr
    assert "azmlinfsrv" in done.stdout.lower() or "gunicorn" in done.stdout.lower()


def test_traffic_shows_sets_and_keeps_the_mirror_unless_told(runtime) -> None:
    process, client = runtime
    assert as_json(cli(process, "traffic", ENDPOINT, "--json")) == {
        "name": ENDPOINT, "traffic": {"blue": 100}, "mirror_traffic": {}
    }  # fmt: skip
    mirrored = as_json(cli(process, "traffic", ENDPOINT, "blue=100", "--mirror", "green=20", "--json"))
    assert mirrored["traffic"] == {"blue": 100} and mirrored["mirror_traffic"] == {"green": 20}
    kept = as_json(cli(process, "traffic", ENDPOINT, "blue=100", "--json"))
    assert kept["mirror_traffic"] == {"green": 20}, "the mirror stays unless --mirror is given"
    cleared = as_json(cli(process, "traffic", ENDPOINT, "--mirror", "", "--json"))
    assert cleared["mirror_traffic"] == {}
    split = as_json(cli(process, "traffic", ENDPOINT, "blue=90", "green=10", "--json"))
    assert split["traffic"] == {"blue": 90, "green": 10}
    refused = cli(process, "traffic", ENDPOINT, "--mirror", "green=20")
    assert refused.returncode == 1 and "cannot take live and mirrored traffic at once" in refused.stderr
    as_json(cli(process, "traffic", ENDPOINT, "blue=100", "--json"))
    assert client.get_endpoint(ENDPOINT)["traffic"] == {"blue": 100}


@pytest.mark.parametrize(
    ("words", "message"),
    [(["blue=ninety"], "'blue=ninety' is not DEPLOYMENT=PERCENT"),
     (["blue=90", "green=20"], "add up to 110 %"),
     (["blue=101"], "'blue=101' is not DEPLOYMENT=PERCENT"),
     (["blue=50", "blue=50"], "blue is given twice")],
)  # fmt: skip
def test_bad_traffic_words_are_a_usage_error(runtime, words: list[str], message: str) -> None:
    process, client = runtime
    done = cli(process, "traffic", ENDPOINT, *words)
    assert done.returncode == 2 and message in done.stderr
    assert client.get_endpoint(ENDPOINT)["traffic"] == {"blue": 100}


def test_an_unknown_endpoint_fails_with_its_name_and_json_stays_clean(runtime) -> None:
    process, _ = runtime
    done = cli(process, "endpoints", "show", "nosuch", "--json")
    assert done.returncode == 1 and done.stdout == ""
    assert "nosuch" in done.stderr


def test_an_airflow_connection_is_used_with_conn_id(runtime) -> None:
    process, client = runtime
    with local_connection(process, "cli_conn"):
        variable = "AIRFLOW_CONN_CLI_CONN"
        command = [sys.executable, "-m", "deployflow_cli", "keys", ENDPOINT, "--conn-id", "cli_conn", "--json"]
        environment = {**os.environ, "PYTHONPATH": str(REPO / "plugins"), variable: os.environ[variable]}
        done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)
    assert json.loads(done.stdout) == client.keys(ENDPOINT), done.stderr


def test_without_a_runtime_the_message_says_how_to_start_one(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    command = [sys.executable, "-m", "deployflow_cli", "endpoints", "list", "--control-url", "http://127.0.0.1:9",
               "--token-file", str(token)]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    )
    assert done.returncode == 1
    assert "./dev up" in done.stderr
    missing = subprocess.run([*command[:5], "--token-file", str(tmp_path / "none")], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO / "plugins")})  # fmt: skip
    assert missing.returncode == 1 and "no admin token" in missing.stderr


def test_an_unknown_connection_is_named() -> None:
    command = [sys.executable, "-m", "deployflow_cli", "endpoints", "list", "--conn-id", "no_such_conn", "--json"]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    )
    assert done.returncode == 1 and done.stdout == ""
    assert "connection 'no_such_conn'" in done.stderr
