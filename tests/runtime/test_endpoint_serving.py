"""The local runtime end to end: real scoring servers behind the real router."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest

from deployflow.local.client import LocalRuntimeClient, RuntimeClientError
from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess, deploy

pytestmark = pytest.mark.slow

ENDPOINT = "diabetes-ep"
SAMPLE_REQUEST = json.loads((SAMPLE_MODEL / "sample-request.json").read_text())
SAMPLE_RESPONSE = json.loads((SAMPLE_MODEL / "sample-response.json").read_text())


@pytest.fixture(scope="module")
def endpoint(client: LocalRuntimeClient) -> dict:
    client.register_model("diabetes", SAMPLE_MODEL)
    client.put_endpoint(ENDPOINT, description="sample", compute="test")
    deploy(client, ENDPOINT, "blue", instance_count=2, resources={"cpu": 0.5, "memory_gb": 1})
    deploy(client, ENDPOINT, "green", instance_count=1)
    return client.set_traffic(ENDPOINT, {"blue": 100})


@pytest.fixture(scope="module")
def key(client: LocalRuntimeClient, endpoint: dict) -> str:
    return client.keys(ENDPOINT)["primary_key"]


class Scorer:
    """Sends the sample request over one keep-alive connection and remembers every answer."""

    def __init__(self, uri: str, key: str) -> None:
        self.uri = uri
        self.http = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30)
        self.answers: list[tuple[int, str | None]] = []

    def score(self, headers: dict[str, str] | None = None) -> httpx.Response:
        response = self.http.post(self.uri, json=SAMPLE_REQUEST, headers=headers)
        self.answers.append((response.status_code, response.headers.get("azureml-model-deployment")))
        return response

    def loop_until(self, stop: threading.Event, max_requests: int = 20_000, max_seconds: float = 60) -> None:
        """A steady request loop, bounded in count and time."""
        deadline = time.monotonic() + max_seconds
        while not stop.is_set() and len(self.answers) < max_requests and time.monotonic() < deadline:
            self.score()

    def failures(self) -> list[tuple[int, str | None]]:
        return [a for a in self.answers if a[0] != 200]


def test_sample_model_answers_through_the_endpoint(endpoint: dict, key: str, client: LocalRuntimeClient) -> None:
    result = client.score(endpoint["scoring_uri"], SAMPLE_REQUEST, key, headers={"x-request-id": "req-123"})
    assert result.status_code == 200
    assert result.body == pytest.approx(SAMPLE_RESPONSE, rel=1e-9)
    assert result.deployment == "blue"
    assert result.headers["x-request-id"] == "req-123"
    assert float(result.headers["x-ms-run-fn-exec-ms"]) >= 0
    blue = client.get_deployment(ENDPOINT, "blue")
    assert [i["state"] for i in blue["instances"]] == ["ready", "ready"]


def test_scoring_uri_is_the_routers(endpoint: dict, runtime: RuntimeProcess) -> None:
    assert endpoint["scoring_uri"] == f"http://127.0.0.1:{runtime.router_port}/endpoints/{ENDPOINT}/score"


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", "Basic abc"])
def test_missing_or_wrong_key_is_401_with_json(endpoint: dict, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.post(endpoint["scoring_uri"], json=SAMPLE_REQUEST, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "Unauthorized"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b'{"rows": []}', '"data" key'),
        (b'{"data": [[1, 2]]}', "row 0 must be a list of 10 numbers"),
        (b'{"data": [["a", 1, 1, 1, 1, 1, 1, 1, 1, 1]]}', "finite number"),
    ],
)
def test_malformed_body_is_400_with_a_json_error(endpoint: dict, key: str, body: bytes, message: str) -> None:
    response = httpx.post(endpoint["scoring_uri"], content=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_oversized_body_is_413(endpoint: dict, key: str) -> None:
    body = b'{"data": [' + b"[0,0,0,0,0,0,0,0,0,0]," * 80_000 + b"[0,0,0,0,0,0,0,0,0,0]]}"
    response = httpx.post(endpoint["scoring_uri"], content=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PayloadTooLarge"


def test_malformed_http_is_400(endpoint: dict, runtime: RuntimeProcess) -> None:
    with socket.create_connection(("127.0.0.1", runtime.router_port), timeout=5) as sock:
        sock.sendall(b"POST /endpoints/x/score HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400")
    assert b'"BadRequest"' in answer


def test_unknown_endpoint_and_route_are_404(endpoint: dict, key: str, runtime: RuntimeProcess) -> None:
    base = f"http://127.0.0.1:{runtime.router_port}"
    assert httpx.post(f"{base}/endpoints/nope/score", json={}).status_code == 404
    assert httpx.get(f"{base}/elsewhere").status_code == 404


def test_traffic_split_is_within_five_points_over_1000_requests(
    endpoint: dict, key: str, client: LocalRuntimeClient
) -> None:
    client.set_traffic(ENDPOINT, {"blue": 70, "green": 30})
    try:
        scorer = Scorer(endpoint["scoring_uri"], key)
        for _ in range(1200):
            scorer.score()
    finally:
        client.set_traffic(ENDPOINT, {"blue": 100})
    assert scorer.failures() == []
    served = Counter(deployment for _, deployment in scorer.answers)
    assert abs(100 * served["green"] / 1200 - 30) <= 5, served
    assert served["blue"] + served["green"] == 1200


def test_header_pins_a_deployment_that_takes_no_traffic(endpoint: dict, key: str) -> None:
    scorer = Scorer(endpoint["scoring_uri"], key)
    for _ in range(50):
        assert scorer.score({"azureml-model-deployment": "green"}).status_code == 200
    assert {d for _, d in scorer.answers} == {"green"}
    unknown = scorer.score({"azureml-model-deployment": "purple"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "DeploymentNotFound"


def test_mirror_copies_a_share_and_drops_its_answers(endpoint: dict, key: str, client: LocalRuntimeClient) -> None:
    before = client.get_deployment(ENDPOINT, "green")["mirrored_requests"]
    client.set_traffic(ENDPOINT, {"blue": 100}, mirror_traffic={"green": 40})
    try:
        scorer = Scorer(endpoint["scoring_uri"], key)
        for _ in range(500):
            scorer.score()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            mirrored = client.get_deployment(ENDPOINT, "green")["mirrored_requests"] - before
            if mirrored >= 150:
                break
            time.sleep(0.1)
    finally:
        client.set_traffic(ENDPOINT, {"blue": 100}, mirror_traffic={})
    assert {d for _, d in scorer.answers} == {"blue"}
    assert 150 <= mirrored <= 250, mirrored


def test_mirror_rules_match_azure(endpoint: dict, client: LocalRuntimeClient) -> None:
    with pytest.raises(RuntimeClientError, match="at most 50"):
        client.set_traffic(ENDPOINT, {"blue": 100}, mirror_traffic={"green": 60})
    with pytest.raises(RuntimeClientError, match="live and mirrored"):
        client.set_traffic(ENDPOINT, {"blue": 50, "green": 50}, mirror_traffic={"green": 10})
    with pytest.raises(RuntimeClientError, match="add up to 100"):
        client.set_traffic(ENDPOINT, {"blue": 50, "green": 20})
    with pytest.raises(RuntimeClientError, match="no deployment named red"):
        client.set_traffic(ENDPOINT, {"red": 100})
    assert client.get_endpoint(ENDPOINT)["traffic"] == {"blue": 100}


def test_traffic_changes_fail_no_request(endpoint: dict, key: str, client: LocalRuntimeClient) -> None:
    scorer = Scorer(endpoint["scoring_uri"], key)
    stop = threading.Event()
    loop = threading.Thread(target=scorer.loop_until, args=(stop,))
    loop.start()
    splits = [{"blue": 50, "green": 50}, {"green": 100}, {"blue": 10, "green": 90}, {"blue": 100}]
    changes = 0
    deadline = time.monotonic() + 60
    try:
        # At least three rounds of changes, and on a busy machine as many more as it takes for
        # a hundred answers to have crossed them.
        while (changes < 3 * len(splits) or len(scorer.answers) <= 100) and time.monotonic() < deadline:
            client.set_traffic(ENDPOINT, splits[changes % len(splits)])
            changes += 1
            time.sleep(0.1)
    finally:
        stop.set()
        loop.join()
        client.set_traffic(ENDPOINT, {"blue": 100})
    assert len(scorer.answers) > 100
    assert scorer.failures() == []


def test_killed_replica_fails_no_request_and_comes_back(endpoint: dict, key: str, client: LocalRuntimeClient) -> None:
    victim = client.get_deployment(ENDPOINT, "blue")["instances"][0]
    scorer = Scorer(endpoint["scoring_uri"], key)
    stop = threading.Event()
    loop = threading.Thread(target=scorer.loop_until, args=(stop,))
    loop.start()
    try:
        time.sleep(0.5)
        os.killpg(victim["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            instance = client.get_deployment(ENDPOINT, "blue")["instances"][0]
            if instance["restarts"] >= 1 and instance["state"] == "ready":
                break
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        loop.join()
    assert instance["restarts"] >= 1 and instance["state"] == "ready", instance
    assert instance["pid"] != victim["pid"]
    assert len(scorer.answers) > 100
    assert scorer.failures() == []


def test_replicas_listen_on_loopback_only(endpoint: dict, client: LocalRuntimeClient) -> None:
    pids = {i["pid"] for i in client.get_deployment(ENDPOINT, "blue")["instances"]}
    listening = []
    for pid in pids:
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for process in family:
            listening += [c.laddr.ip for c in process.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "the replicas listen on no socket"
    assert set(listening) == {"127.0.0.1"}


def test_resource_limits_are_enforced_and_reported(endpoint: dict, client: LocalRuntimeClient) -> None:
    blue = client.get_deployment(ENDPOINT, "blue")
    pid = blue["instances"][0]["pid"]
    if blue["enforcement"] == "cgroup-v1":
        cgroups = dict(line.split(":", 2)[1:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())
        quota = Path("/sys/fs/cgroup/cpu", cgroups["cpu"].lstrip("/"), "cpu.cfs_quota_us").read_text()
        assert int(quota) == 50_000  # 0.5 cpu of a 100 ms period
        memory_dir = Path("/sys/fs/cgroup/memory", cgroups["memory"].lstrip("/"))
        assert int((memory_dir / "memory.limit_in_bytes").read_text()) == 1024 * 1024 * 1024
    elif blue["enforcement"] == "cgroup-v2":
        path = Path(f"/proc/{pid}/cgroup").read_text().splitlines()[-1].split(":", 2)[2]
        cgroup = next(p for p in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")) if (p / path[1:]).exists())
        assert (cgroup / path[1:] / "cpu.max").read_text().split()[0] == "50000"
    else:
        assert blue["enforcement"] == "affinity+rlimit"
        assert len(psutil.Process(pid).cpu_affinity()) == 1


def test_regenerated_key_replaces_the_old_one(endpoint: dict, client: LocalRuntimeClient) -> None:
    old = client.keys(ENDPOINT)
    new = client.regenerate_key(ENDPOINT, "secondary")
    assert new["primary_key"] == old["primary_key"]
    assert new["secondary_key"] != old["secondary_key"]
    uri = endpoint["scoring_uri"]
    assert client.score(uri, SAMPLE_REQUEST, old["secondary_key"]).status_code == 401
    assert client.score(uri, SAMPLE_REQUEST, new["secondary_key"]).status_code == 200


def test_deployment_with_traffic_cannot_be_deleted(endpoint: dict, client: LocalRuntimeClient) -> None:
    with pytest.raises(RuntimeClientError) as error:
        client.delete_deployment(ENDPOINT, "blue")
    assert error.value.status_code == 409
    assert "set its traffic to 0 first" in str(error.value)


def test_logs_show_each_instance_of_the_scoring_server(endpoint: dict, client: LocalRuntimeClient, key: str) -> None:
    assert client.score(endpoint["scoring_uri"], SAMPLE_REQUEST, key, deployment="blue").status_code == 200
    logs = client.logs(ENDPOINT, "blue", lines=50)
    instances = re.findall(r"^==> instance (\S+) <==$", logs, re.M)
    assert len(instances) == 2, logs[:500]
    assert re.search(r'"POST /score HTTP/1.1" 200', logs), "the request just scored is not in the log tail"
    with pytest.raises(RuntimeClientError) as error:
        client.logs(ENDPOINT, "no-such-deployment")
    assert error.value.status_code == 404


def test_restart_restores_endpoints_with_the_same_url_and_keys(
    endpoint: dict, runtime: RuntimeProcess, client: LocalRuntimeClient
) -> None:
    keys = client.keys(ENDPOINT)
    pids = [i["pid"] for i in client.get_deployment(ENDPOINT, "blue")["instances"]]
    # the replicas' own processes and the server workers each forked
    family = {p for pid in pids for p in [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]}
    assert len(family) > len(pids), "expected the scoring servers to have worker processes"
    runtime.stop(signal.SIGKILL)
    deadline = time.monotonic() + 15
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in family):
        assert time.monotonic() < deadline, "replicas or their workers outlived the killed runtime"
        time.sleep(0.1)
    runtime.start()
    with runtime.client() as fresh:
        restored = fresh.get_endpoint(ENDPOINT)
        assert restored["scoring_uri"] == endpoint["scoring_uri"]
        assert restored["traffic"] == {"blue": 100}
        assert fresh.keys(ENDPOINT) == keys
        assert fresh.wait_for_deployment(ENDPOINT, "blue", timeout_s=120)["provisioning_state"] == "Succeeded"
        result = fresh.score(restored["scoring_uri"], SAMPLE_REQUEST, keys["primary_key"])
    assert result.status_code == 200
    assert result.body == pytest.approx(SAMPLE_RESPONSE, rel=1e-9)
