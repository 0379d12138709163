"""A change is checked whole before it is applied, and stored before it is acknowledged (a real runtime)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from deployflow.local.client import LocalRuntimeClient, RuntimeClientError
from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess, deploy

pytestmark = pytest.mark.slow

BROKEN_INIT = """
def init():
    raise RuntimeError("broken on purpose")


def run(raw_data):
    return []
"""


def stored_endpoint(runtime: RuntimeProcess, name: str) -> dict:
    with sqlite3.connect(runtime.data_dir / "state.sqlite") as db:
        (body,) = db.execute("SELECT body FROM endpoints WHERE name = ?", (name,)).fetchone()
    return json.loads(body)


@pytest.fixture(scope="module")
def endpoint(client: LocalRuntimeClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Endpoint ``changes``: blue (the sample model) takes all traffic; broken failed to provision."""
    client.register_model("diabetes", SAMPLE_MODEL, version="1")
    broken = tmp_path_factory.mktemp("broken") / "package"
    shutil.copytree(SAMPLE_MODEL, broken)
    (broken / "score.py").write_text(BROKEN_INIT)
    client.register_model("broken", broken, version="1")
    client.put_endpoint("changes")
    deploy(client, "changes", "blue")
    client.put_deployment("changes", "broken", model="broken:1", readiness_timeout_s=60)
    assert client.wait_for_deployment("changes", "broken", timeout_s=120)["provisioning_state"] == "Failed"
    client.set_traffic("changes", {"blue": 100})
    return "changes"


@pytest.mark.parametrize(
    ("traffic", "mirror", "message"),
    [
        ({"blue": 0, "broken": 100}, None, "broken failed to provision"),
        ({"blue": 50, "broken": 50}, None, "broken failed to provision"),
        (None, {"broken": 10}, "broken failed to provision"),
        ({"blue": 50, "nowhere": 50}, None, "no deployment named nowhere"),
        ({"blue": 60}, None, "add up to 100"),
    ],
)
def test_a_refused_traffic_change_leaves_the_router_and_the_database_as_they_were(
    client: LocalRuntimeClient, runtime: RuntimeProcess, endpoint: str, traffic, mirror, message: str
) -> None:
    before = client.get_endpoint(endpoint)
    with pytest.raises(RuntimeClientError, match=message) as refused:
        client.put_endpoint(endpoint, traffic=traffic, mirror_traffic=mirror, description="changed")
    assert refused.value.status_code in (400, 422)

    after = client.get_endpoint(endpoint)
    assert (after["traffic"], after["mirror_traffic"], after["description"]) == (
        {"blue": 100}, {}, before["description"],
    )  # fmt: skip
    stored = stored_endpoint(runtime, endpoint)
    assert (stored["traffic"], stored["mirror_traffic"], stored["spec"]["description"]) == (
        {"blue": 100}, {}, before["description"],
    )  # fmt: skip
    key = client.keys(endpoint)["primary_key"]
    answers = [client.score(after["scoring_uri"], {"data": [[0.0] * 10]}, key) for _ in range(10)]
    assert [a.status_code for a in answers] == [200] * 10
    assert {a.deployment for a in answers} == {"blue"}


def test_an_accepted_change_is_stored_before_it_is_acknowledged(
    client: LocalRuntimeClient, runtime: RuntimeProcess, endpoint: str
) -> None:
    answer = client.put_endpoint(endpoint, description="stored first")
    assert stored_endpoint(runtime, endpoint)["spec"]["description"] == answer["description"] == "stored first"

    keys = client.regenerate_key(endpoint, "secondary")
    stored = stored_endpoint(runtime, endpoint)
    assert (stored["primary_key"], stored["secondary_key"]) == (keys["primary_key"], keys["secondary_key"])


@pytest.mark.parametrize("version", [".1", ".1.partial", "-1", "_1"])
def test_a_model_version_that_could_collide_with_a_staging_copy_is_refused(
    client: LocalRuntimeClient, version: str
) -> None:
    with pytest.raises(RuntimeClientError) as refused:
        client.register_model("diabetes", SAMPLE_MODEL, version=version)
    assert refused.value.status_code == 422
    assert all(m["version"] != version for m in client.list_models())


def test_registered_versions_still_take_dots_inside(client: LocalRuntimeClient, tmp_path: Path) -> None:
    package = tmp_path / "package"
    shutil.copytree(SAMPLE_MODEL, package)
    (package / "model" / "extra.txt").write_text("another model\n")
    assert client.register_model("dotted", package, version="1.2.3")["version"] == "1.2.3"
