"""The real-time DAG, run with `dag.test()` against a real local runtime."""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployflow.local.client import LocalRuntimeClient, RuntimeClientError
from tests.airflow_support import local_connection, run_dag, task_states
from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    runtime = RuntimeProcess(tmp_path_factory.mktemp("realtime") / "data")
    runtime.start()
    try:
        with local_connection(runtime):
            yield runtime
    finally:
        runtime.stop()


@pytest.fixture
def client(runtime: RuntimeProcess) -> Iterator[LocalRuntimeClient]:
    with runtime.client() as client:
        yield client


@pytest.fixture
def dag():  # noqa: ANN201 - a DAG
    """A fresh DAG object per test: dag.test() folds a run's conf into the object's params."""
    import dags.realtime_deployment as module

    return importlib.reload(module).dag


def assert_no_endpoint(client: LocalRuntimeClient, name: str) -> None:
    with pytest.raises(RuntimeClientError) as missing:
        client.get_endpoint(name)
    assert missing.value.status_code == 404, f"endpoint {name} was left behind"


def test_sample_model_passes_test_deployment_and_the_test_endpoint_is_torn_down(dag, client) -> None:
    dag_run = run_dag(dag, {"endpoint_name": "rt-ok"}, retries=0)

    assert task_states(dag_run) == dict.fromkeys(
        ["validate", "register_model", "create_test_endpoint", "test_deployment", "smoke_test",
         "teardown_test_endpoint"], "success",
    )  # fmt: skip
    assert str(dag_run.state) == "success"
    assert_no_endpoint(client, "rt-ok-test")
    assert client.get_model("diabetes", "1")["name"] == "diabetes"


def test_a_broken_package_stops_at_validation_and_touches_no_endpoint(dag, client, tmp_path: Path) -> None:
    broken = shutil.copytree(SAMPLE_MODEL, tmp_path / "broken")
    (broken / "sample-response.json").write_text("[1.0, 2.0, 3.0]\n")

    dag_run = run_dag(dag, {"endpoint_name": "rt-broken", "package_path": str(broken)}, retries=0)

    states = task_states(dag_run)
    assert states["validate"] == "failed"
    assert states["create_test_endpoint"] == "upstream_failed"
    assert str(dag_run.state) == "failed"
    assert_no_endpoint(client, "rt-broken-test")


def test_a_refused_deployment_fails_the_run_and_the_teardown_still_removes_the_test_endpoint(dag, client) -> None:
    conf = {"endpoint_name": "rt-gpu", "test_resources": {"cpu": 1, "memory_gb": 1, "gpu": 1}}

    dag_run = run_dag(dag, conf, retries=0)

    states = task_states(dag_run)
    assert states["create_test_endpoint"] == "success"
    assert states["test_deployment"] == "failed"
    assert states["teardown_test_endpoint"] == "success"
    assert str(dag_run.state) == "failed"
    assert_no_endpoint(client, "rt-gpu-test")
