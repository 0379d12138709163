"""The router's live metrics as a scraper reads them: /metrics parsed directly, and through a real Prometheus.

Known traffic goes to a real runtime: 20 good and 5 bad requests (the sample model answers a
body without rows with a 400) to blue, which takes all live traffic while green mirrors half of
it, and 3 good requests pinned to green. Both readings must give those counts per deployment,
status class and traffic kind.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import psutil
import pytest

from deployflow.local.client import LocalRuntimeClient
from deployflow.metrics.client import query, read_snapshot, snapshot
from deployflow.metrics.prometheus import PrometheusServer
from deployflow.runtime.serving.upstream import SPARE_IDLE_S
from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess, deploy

pytestmark = pytest.mark.slow

ENDPOINT = "ep-metrics"
SAMPLE = (SAMPLE_MODEL / "sample-request.json").read_text()
BAD = json.dumps({"data": "not rows"})
GOOD_LIVE, BAD_LIVE, PINNED_TO_GREEN = 20, 5, 3
WAIT_S = 30


@pytest.fixture(scope="module")
def key(client: LocalRuntimeClient) -> str:
    client.register_model("diabetes", SAMPLE_MODEL, version="1")
    client.put_endpoint(ENDPOINT, description="metrics")
    deploy(client, ENDPOINT, "blue")
    deploy(client, ENDPOINT, "green")
    client.set_traffic(ENDPOINT, {"blue": 100}, mirror_traffic={"green": 50})
    return client.keys(ENDPOINT)["primary_key"]


@pytest.fixture(scope="module")
def traffic(client: LocalRuntimeClient, key: str) -> dict[tuple[str, str, str], int]:
    """Send the known requests; the expected counts, green's mirrored ones as the runtime itself counted them."""
    uri = client.get_endpoint(ENDPOINT)["scoring_uri"]
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(headers=auth, timeout=30) as http:
        statuses = [http.post(uri, content=SAMPLE).status_code for _ in range(GOOD_LIVE)]
        statuses += [http.post(uri, content=BAD).status_code for _ in range(BAD_LIVE)]
        pinned = {"azureml-model-deployment": "green"}
        statuses += [http.post(uri, content=SAMPLE, headers=pinned).status_code for _ in range(PINNED_TO_GREEN)]
    assert statuses == [200] * GOOD_LIVE + [400] * BAD_LIVE + [200] * PINNED_TO_GREEN
    return {
        ("blue", "live", "2xx"): GOOD_LIVE,
        ("blue", "live", "4xx"): BAD_LIVE,
        ("green", "live", "2xx"): PINNED_TO_GREEN,
        **mirrored_by_class(client),
    }


def mirrored_by_class(client: LocalRuntimeClient) -> dict[tuple[str, str, str], int]:
    """green's mirrored answers by status class, from the deployment view (its answers less the pinned ones)."""
    by_status = client.get_deployment(ENDPOINT, "green")["requests_by_status"]
    return {
        ("green", "mirror", "2xx"): by_status.get("200", 0) - PINNED_TO_GREEN,
        ("green", "mirror", "4xx"): by_status.get("400", 0),
    }


def with_zeros(counts: dict[tuple[str, str, str], int]) -> dict[tuple[str, str, str], int]:
    """Every deployment x traffic x class series the router exports from the start, zero where nothing was sent."""
    zeros = {
        (d, t, c): 0 for d in ("blue", "green") for t in ("live", "mirror", "probe") for c in ("2xx", "4xx", "5xx")
    }
    return {**zeros, **counts}


def requests_in(samples: dict) -> dict[tuple[str, str, str], int]:
    return {
        (labels["deployment"], labels["traffic"], labels["code"]): int(value)
        for (name, pairs), value in samples.items()
        if name == "deployflow_requests_total" and (labels := dict(pairs))["endpoint"] == ENDPOINT
    }


def test_metrics_text_counts_live_and_mirrored_requests_by_deployment_and_class(
    runtime: RuntimeProcess, client: LocalRuntimeClient, key: str, traffic: dict
) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:  # a mirrored copy may still be in flight: read until /metrics and the runtime's view agree
        text = httpx.get(f"{runtime.control_url}/metrics", timeout=10).text  # no token, no endpoint key
        expected = with_zeros({**traffic, **mirrored_by_class(client)})
        if requests_in(snapshot(text)) == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    samples = snapshot(text)
    assert requests_in(samples) == expected
    mirrored = expected["green", "mirror", "2xx"] + expected["green", "mirror", "4xx"]
    assert 0 < mirrored < GOOD_LIVE + BAD_LIVE, f"half of 25 requests mirrored, got {mirrored}"
    labels = (("deployment", "blue"), ("endpoint", ENDPOINT), ("traffic", "live"))
    assert samples["deployflow_request_duration_seconds_count", labels] == GOOD_LIVE + BAD_LIVE
    assert samples["deployflow_request_duration_seconds_bucket", (*labels[:2], ("le", "+Inf"), labels[2])] == 25
    assert 0 < samples["deployflow_request_duration_seconds_sum", labels] < 25 * 1.0  # ms-scale answers
    assert samples["deployflow_request_timeouts_total", labels] == 0
    assert samples["deployflow_request_no_answer_total", labels] == 0
    assert key not in text
    assert requests_in(read_snapshot(f"{runtime.control_url}/metrics")) == expected


def test_prometheus_counts_live_and_mirrored_requests_by_deployment_and_class(
    prometheus: PrometheusServer, client: LocalRuntimeClient, traffic: dict
) -> None:
    promql = f'sum by (deployment, traffic, code) (deployflow_requests_total{{endpoint="{ENDPOINT}"}})'
    deadline = time.monotonic() + WAIT_S
    while True:  # until a scrape after the last request has landed
        seen = {(m["deployment"], m["traffic"], m["code"]): int(v) for m, v in query(prometheus.url, promql)}
        expected = with_zeros({**traffic, **mirrored_by_class(client)})
        if seen == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    assert seen == expected
    errors = query(prometheus.url, f'sum(deployflow_requests_total{{endpoint="{ENDPOINT}",code="4xx"}})')
    assert errors == [({}, float(BAD_LIVE + expected["green", "mirror", "4xx"]))]


def test_metrics_are_off_with_no_metrics(tmp_path: Path) -> None:
    runtime = RuntimeProcess(tmp_path / "data", extra_args=["--no-metrics"])
    runtime.start()
    try:
        response = httpx.get(f"{runtime.control_url}/metrics", timeout=10)
    finally:
        runtime.stop()
    assert response.status_code == 404
    assert "--no-metrics" in response.json()["error"]["message"]


def replica_port(client: LocalRuntimeClient, deployment: str) -> int:
    pid = client.get_deployment(ENDPOINT, deployment)["instances"][0]["pid"]
    listening = [c.laddr.port for c in psutil.Process(pid).net_connections("inet") if c.status == psutil.CONN_LISTEN]
    assert listening, f"replica {pid} listens on no port"
    return listening[0]


def test_azmlinfsrv_closes_every_connection_so_the_router_keeps_a_spare(client: LocalRuntimeClient, key: str) -> None:
    """The premise of the spare upstream connection: the replica answers keep-alive requests with a close."""
    port = replica_port(client, "blue")
    request = (
        f"POST /score HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: keep-alive\r\ncontent-type: application/json\r\n"
        f"content-length: {len(SAMPLE)}\r\n\r\n{SAMPLE}"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):  # ends only when the server closes
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 200")
    assert b"connection: close" in head


def test_a_spare_connection_does_not_hold_the_replica_from_its_health_probe(
    client: LocalRuntimeClient, key: str
) -> None:
    """A sync worker waits on the router's unused spare; the spare is closed soon enough for a probe to pass."""
    uri = client.get_endpoint(ENDPOINT)["scoring_uri"]
    port = replica_port(client, "blue")
    httpx.post(uri, content=SAMPLE, headers={"Authorization": f"Bearer {key}"}, timeout=10).raise_for_status()
    started = time.monotonic()
    health = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    waited = time.monotonic() - started
    assert health.status_code == 200
    assert waited < SPARE_IDLE_S + 1.0, f"the health route waited {waited:.2f}s behind the spare connection"


def test_mirrored_answers_are_compared_with_the_live_ones_and_the_probe_is_counted_apart(
    runtime: RuntimeProcess, client: LocalRuntimeClient, key: str, traffic: dict
) -> None:
    mirrored_ok = mirrored_by_class(client)["green", "mirror", "2xx"]
    deadline = time.monotonic() + WAIT_S
    while client._call("GET", f"/endpoints/{ENDPOINT}/deployments/green/shadow")["agreed"] < mirrored_ok:
        assert time.monotonic() < deadline, "every mirrored copy of a 2xx answer is compared"
        time.sleep(0.2)
    shadow = client._call("GET", f"/endpoints/{ENDPOINT}/deployments/green/shadow")
    # the same model on both: every copy of a request blue answered 2xx agrees; blue's 400s are no reference
    assert (shadow["agreed"], shadow["disagreed"], shadow["disagreements"]) == (mirrored_ok, 0, [])
    uri = client.get_endpoint(ENDPOINT)["scoring_uri"]
    probe = {"Authorization": f"Bearer {key}", "azureml-model-deployment": "green", "x-deployflow-probe": "1"}
    assert httpx.post(uri, content=SAMPLE, headers={**probe, "Content-Type": "application/json"}).status_code == 200
    samples = snapshot(httpx.get(f"{runtime.control_url}/metrics", timeout=10).text)
    assert requests_in(samples)["green", "probe", "2xx"] == 1, "the probe's request is not users' traffic"
    assert requests_in(samples)["green", "live", "2xx"] == PINNED_TO_GREEN
    agree = (("deployment", "green"), ("endpoint", ENDPOINT), ("result", "agree"))
    assert samples["deployflow_shadow_answers_total", agree] == mirrored_ok


def test_the_replica_serves_the_router_on_an_owner_only_unix_socket(runtime: RuntimeProcess, key: str) -> None:
    """Besides its loopback port, each replica listens on a socket in the data dir that only its user can open."""
    sockets = sorted((runtime.data_dir / "sockets").glob("*.sock"))
    assert len(sockets) == 2, sockets  # blue's and green's instance
    assert {oct(path.stat().st_mode & 0o777) for path in sockets} == {"0o600"}
    request = (
        f"POST /score HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
        f"content-length: {len(SAMPLE)}\r\n\r\n{SAMPLE}"
    ).encode()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(sockets[0]))
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_a_replica_opens_no_gunicorn_control_socket(runtime: RuntimeProcess) -> None:
    """gunicorn 25.1+ would serve its control interface (worker counts, reload, shutdown) on a socket in the
    replica user's home; the runtime's replicas listen on their port and their own socket, nothing else."""
    replicas = [
        c
        for c in psutil.Process(runtime.process.pid).children(recursive=True)
        if "replica_main" in " ".join(c.cmdline())
    ]
    assert replicas, "the module's deployments have replicas"
    unix_paths = {c.laddr for p in replicas for c in p.net_connections(kind="unix") if c.laddr}
    sockets = {str(path) for path in (runtime.data_dir / "sockets").glob("*.sock")}
    assert unix_paths and unix_paths <= sockets, unix_paths - sockets
