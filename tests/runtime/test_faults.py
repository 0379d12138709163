"""Crashes: the runtime killed with SIGKILL in the middle of a change, and a replica killed under load.

After a restart the state is the last one a client was answered 2xx for, or the change that was in
flight when the kill came (it may or may not have been stored) -- never a mix of the two. A replica's
death costs no request: the router sends what it held to the other replica.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployflow.local.client import LocalRuntimeClient, RuntimeClientError
from tests.runtime.batch_support import SAMPLE_DATA, job_document
from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess, deploy, sample_runtime

pytestmark = pytest.mark.slow

ENDPOINT = "crashy"
SAMPLE_REQUEST = json.loads((SAMPLE_MODEL / "sample-request.json").read_text())
SPLITS = [{"blue": 100}, {"blue": 30, "green": 70}, {"green": 100}, {"blue": 50, "green": 50}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    with sample_runtime(tmp_path_factory.mktemp("faults") / "data") as (runtime, client):
        client.put_endpoint(ENDPOINT, compute="test")
        deploy(client, ENDPOINT, "blue", instance_count=2)
        deploy(client, ENDPOINT, "green", instance_count=1)
        client.set_traffic(ENDPOINT, {"blue": 100})
        yield runtime


def kill_during(runtime: RuntimeProcess, change: Callable[[LocalRuntimeClient, int], Any]) -> tuple[list, Any]:
    """Make ``change`` over and over on one connection, SIGKILL the runtime 1 s in, restart it.

    Returns what was acknowledged (2xx) in order, and the change that was in flight at the kill."""
    acknowledged: list = []
    in_flight: list = []

    def changing() -> None:
        with runtime.client() as client:
            for i in range(10_000):
                in_flight[:] = [i]
                try:
                    acknowledged.append(change(client, i))
                except RuntimeClientError as e:
                    assert e.status_code == 0, f"a change was refused before the kill: {e}"
                    return

    thread = threading.Thread(target=changing)
    thread.start()
    time.sleep(1.0)
    runtime.stop(signal.SIGKILL)
    thread.join(timeout=30)
    assert not thread.is_alive()
    runtime.start()
    assert len(acknowledged) >= 3, "too few changes were made before the kill to test anything"
    return acknowledged, in_flight[0]


def ready(client: LocalRuntimeClient, deployment: str) -> None:
    result = client.wait_for_deployment(ENDPOINT, deployment, timeout_s=120)
    assert result["provisioning_state"] == "Succeeded", result["error"]


def routed(traffic: dict[str, int]) -> dict[str, int]:
    return {name: share for name, share in traffic.items() if share}


def test_a_kill_during_traffic_changes_restores_the_last_acknowledged_split_or_the_next(
    served: RuntimeProcess,
) -> None:
    acknowledged, in_flight = kill_during(served, lambda client, i: client.set_traffic(ENDPOINT, SPLITS[i % 4]))
    with served.client() as client:
        traffic = client.get_endpoint(ENDPOINT)["traffic"]
        deployments = {d["name"] for d in client.list_deployments(ENDPOINT)}
        assert sum(traffic.values()) == 100 and set(traffic) <= deployments, traffic
        assert routed(traffic) in [routed(acknowledged[-1]["traffic"]), SPLITS[in_flight % 4]], (
            f"restored {traffic}; the last acknowledged was {acknowledged[-1]['traffic']}, "
            f"the one in flight {SPLITS[in_flight % 4]}"
        )
        # and the router serves by the restored split
        for name in routed(traffic):
            ready(client, name)
        uri = client.get_endpoint(ENDPOINT)["scoring_uri"]
        key = client.keys(ENDPOINT)["primary_key"]
        served_by = {client.score(uri, SAMPLE_REQUEST, key).deployment for _ in range(20)}
        assert served_by <= set(routed(traffic)), served_by
        client.set_traffic(ENDPOINT, {"blue": 100})


def test_a_kill_during_key_regeneration_keeps_a_whole_pair_that_works(served: RuntimeProcess) -> None:
    with served.client() as client:
        before = client.keys(ENDPOINT)
    acknowledged, _ = kill_during(served, lambda client, i: client.regenerate_key(ENDPOINT, "secondary"))
    with served.client() as client:
        keys = client.keys(ENDPOINT)
        assert keys["primary_key"] == before["primary_key"], "regenerating the secondary key changed the primary"
        older = [pair["secondary_key"] for pair in [before, *acknowledged[:-1]]]
        # the last acknowledged pair, or the one the kill interrupted: never an older key come back
        assert keys == acknowledged[-1] or keys["secondary_key"] not in older
        ready(client, "blue")
        uri = client.get_endpoint(ENDPOINT)["scoring_uri"]
        assert client.score(uri, SAMPLE_REQUEST, keys["secondary_key"]).status_code == 200
        assert client.score(uri, SAMPLE_REQUEST, keys["primary_key"]).status_code == 200
        for stale in {*older, acknowledged[-1]["secondary_key"]} - {keys["secondary_key"]}:
            assert client.score(uri, SAMPLE_REQUEST, stale).status_code == 401


def test_a_batch_job_acknowledged_before_a_kill_is_failed_or_finished_never_lost(
    served: RuntimeProcess, tmp_path: Path
) -> None:
    """Killed right after the job was accepted (queued or starting its workers): the restart must
    still know it and say what became of it. A job killed while its workers run is tested in
    test_batch_jobs (test_a_restart_fails_the_job_that_was_running)."""
    with served.client() as client:
        job = client.submit_job(job_document("crash", str(SAMPLE_DATA), str(tmp_path / "out"), mini_batch_size=1))
    served.stop(signal.SIGKILL)
    served.start()
    with served.client() as client:
        after = client.get_job(job["id"])
    assert after["status"] in ("Failed", "Completed"), after
    if after["status"] == "Failed":
        assert "restarted" in after["error"], after["error"]
        assert not (tmp_path / "out").exists(), "a failed job left outputs behind"
    else:
        assert (tmp_path / "out" / "predictions.csv").exists()


def test_a_replica_killed_under_steady_load_fails_no_request(served: RuntimeProcess) -> None:
    """~30 requests a second while one of blue's two replicas is SIGKILLed and replaced: the README
    promises that a request a dying replica held is sent to another, so not one fails."""
    with served.client() as client:
        ready(client, "blue")
        client.set_traffic(ENDPOINT, {"blue": 100})
        uri = client.get_endpoint(ENDPOINT)["scoring_uri"]
        key = client.keys(ENDPOINT)["primary_key"]
        victim = client.get_deployment(ENDPOINT, "blue")["instances"][0]
    answers: list[int] = []
    stop = threading.Event()

    def steady() -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            next_at = time.monotonic()
            while not stop.is_set() and len(answers) < 3000:
                answers.append(http.post(uri, json=SAMPLE_REQUEST).status_code)
                next_at += 1 / 30
                time.sleep(max(0.0, next_at - time.monotonic()))

    thread = threading.Thread(target=steady)
    thread.start()
    try:
        time.sleep(1.0)
        os.killpg(victim["pid"], signal.SIGKILL)
        killed_at = len(answers)
        with served.client() as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                instance = client.get_deployment(ENDPOINT, "blue")["instances"][0]
                if instance["restarts"] >= 1 and instance["state"] == "ready":
                    break
                time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join()
    assert instance["state"] == "ready" and instance["pid"] != victim["pid"], instance
    assert len(answers) - killed_at >= 30, "the load did not go on past the kill"
    failed = [status for status in answers if status != 200]
    assert failed == [], f"{len(failed)} of {len(answers)} requests failed: {sorted(set(failed))}"
