"""The real-time DAG, run with `dag.test()` against a real local runtime."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployflow.local.client import LocalRuntimeClient, RuntimeClientError
from deployflow.platform.claims import CLAIM_TAG
from deployflow.runtime.environments import EnvironmentCache
from tests.airflow_support import connected_runtime, run_dag, task_states, xcom
from tests.runtime.support import ENV_CACHE, SAMPLE_MODEL, RuntimeProcess
from tests.validation.mlflow_models import ROWS, pyfunc_predict, save_iris_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    with connected_runtime(tmp_path_factory.mktemp("realtime") / "data") as runtime:
        yield runtime


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


# A short run: the stages and their wiring are real, only the loads and windows are small.
QUICK = {
    "stress": {"rate": 30, "duration_s": 3, "resources": {"cpu": 1.0, "memory_gb": 1.0}},
    "slo": {"percentile": 99, "latency_ms": 200, "max_error_percent": 1.0},
    "target_rate": 60,
    "candidates": [
        {"name": "small", "resources": {"cpu": 0.25, "memory_gb": 1.0}},
        {"name": "large", "resources": {"cpu": 1.0, "memory_gb": 1.0}},
    ],
    "profile_settings": {"start_rate": 40, "max_rate": 640, "step_duration_s": 1.0, "settle_s": 0.3, "max_steps": 5},
    "rollout_plan": {
        "steps": ["mirror 20% 3s", "traffic 50% 3s", "traffic 100%"],
        "gates": {"min_requests": 20, "max_p99_ratio": 3.0},
        "old_deployment_delete_after_s": 1,
        "bake_s": 3,
    },
}
SKIPPED_WITHOUT_APPROVAL = {"approve_promotion": "skipped", "continue_promotion": "skipped"}


@pytest.fixture(scope="module")
def second_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample package retrained with another alpha: a new model version with its own samples."""
    package = shutil.copytree(SAMPLE_MODEL, tmp_path_factory.mktemp("v2") / "diabetes")
    python = EnvironmentCache(ENV_CACHE).ensure(package / "requirements.txt")
    subprocess.run(
        [str(python), str(package / "train.py"), "--alpha", "0.5", "--package-dir", str(package)], check=True
    )
    return package


def test_first_release_goes_through_every_stage_and_takes_all_traffic(dag, client) -> None:
    dag_run = run_dag(dag, {**QUICK, "endpoint_name": "rt-full"}, retries=0)

    states = task_states(dag_run)
    assert {k: v for k, v in states.items() if v != "success"} == SKIPPED_WITHOUT_APPROVAL, states
    summary = xcom(dag_run, "summary")
    assert summary["rollout"] == "first_release"
    assert summary["chosen_config"] in ("small", "large") and summary["instances"] >= 1
    assert Path(summary["profile_report"]).is_file() and Path(summary["profile_chart"]).is_file()
    endpoint = client.get_endpoint("rt-full")
    assert endpoint["traffic"] == {summary["deployment"]: 100}
    assert endpoint["scoring_uri"] == summary["scoring_uri"]
    assert_no_endpoint(client, "rt-full-test")
    assert_no_endpoint(client, "rt-full-stress")
    assert states["claim_endpoint"] == states["release_endpoint"] == "success"
    assert CLAIM_TAG not in endpoint["tags"]


def test_second_version_is_rolled_out_over_the_first_behind_the_same_url_and_keys(
    dag, client, second_version: Path
) -> None:
    before = client.get_endpoint("rt-full")
    keys = client.keys("rt-full")
    (old,) = before["traffic"]

    dag_run = run_dag(dag, {**QUICK, "endpoint_name": "rt-full", "package_path": str(second_version)}, retries=0)

    states = task_states(dag_run)
    assert {k: v for k, v in states.items() if v != "success"} == SKIPPED_WITHOUT_APPROVAL, states
    summary = xcom(dag_run, "summary")
    assert summary["rollout"] == "completed" and summary["replaced"] == old
    assert summary["rollout_decisions"] == ["step 1: pass", "step 2: pass", "step 3: pass"]  # 3: the bake at 100 %
    windows = json.loads(Path(summary["decision_record"]).read_text())["windows"]
    assert [w["bake"] for w in windows] == [False, False, True]
    assert "<svg" in Path(summary["rollout_timeline"]).read_text()
    after = client.get_endpoint("rt-full")
    assert after["traffic"] == {summary["deployment"]: 100} and summary["deployment"] != old
    assert (after["scoring_uri"], client.keys("rt-full")) == (before["scoring_uri"], keys)
    assert [d["name"] for d in client.list_deployments("rt-full")] == [summary["deployment"]]
    assert client.get_deployment("rt-full", summary["deployment"])["model"] == "diabetes:2"


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


def test_an_mlflow_model_with_no_score_py_is_released_and_answers_as_mlflow_does_in_process(
    dag, client, tmp_path: Path
) -> None:
    folder = save_iris_model(tmp_path / "iris-mlflow")
    conf = {**QUICK, "endpoint_name": "rt-mlflow", "package_path": str(folder), "model_name": "iris-mlflow"}

    dag_run = run_dag(dag, conf, retries=0)

    states = task_states(dag_run)
    assert {k: v for k, v in states.items() if v != "success"} == SKIPPED_WITHOUT_APPROVAL, states
    summary = xcom(dag_run, "summary")
    key = client.keys("rt-mlflow")["primary_key"]
    expected = pyfunc_predict(folder, ROWS)
    columns = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    split = {"input_data": {"columns": columns, "index": list(range(len(ROWS))), "data": ROWS}}
    assert client.score(summary["scoring_uri"], split, key).body == expected
    assert client.score(summary["scoring_uri"], {"input_data": ROWS}, key).body == expected, "a plain list of rows"
    refused = client.score(summary["scoring_uri"], {"input_data": {"columns": ["x"], "data": [[1.0]]}}, key)
    assert refused.status_code == 400 and "error" in refused.body, "input that does not fit the signature is a 4xx"


def test_a_registered_model_is_deployed_by_name_and_version_without_registering_it_again(dag, client) -> None:
    client.register_model("diabetes-registered", SAMPLE_MODEL, version="5")
    # a claim left behind by a run Airflow does not know (killed, deleted): taken over, then released
    client.put_endpoint("rt-registered", tags={CLAIM_TAG: "realtime_deployment/a-run-long-gone"})
    conf = {**QUICK, "endpoint_name": "rt-registered", "model": "diabetes-registered:5", "package_path": None}

    dag_run = run_dag(dag, conf, retries=0)

    states = task_states(dag_run)
    assert {k: v for k, v in states.items() if v != "success"} == SKIPPED_WITHOUT_APPROVAL, states
    assert xcom(dag_run, "register_model") == "diabetes-registered:5"
    assert xcom(dag_run, "validate")["package"] == client.get_model("diabetes-registered", "5")["path"]
    assert [m["version"] for m in client.list_models() if m["name"] == "diabetes-registered"] == ["5"]
    summary = xcom(dag_run, "summary")
    assert client.get_deployment("rt-registered", summary["deployment"])["model"] == "diabetes-registered:5"
    assert CLAIM_TAG not in client.get_endpoint("rt-registered")["tags"], "the run released its claim"
