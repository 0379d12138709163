"""The operators, hook and trigger against a real local runtime through a real Airflow connection."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import TaskDeferred

from deployflow.hooks.ml_platform import MLPlatformHook
from deployflow.local.client import LocalRuntimeClient
from deployflow.operators.deployment import (
    CreateDeploymentOperator,
    DeleteDeploymentOperator,
    SmokeTestOperator,
)
from deployflow.operators.model import RegisterModelOperator, ValidateModelPackageOperator
from deployflow.runtime.environments import EnvironmentCache
from deployflow.triggers.ml_platform import DeploymentStateTrigger
from tests.airflow_support import connected_runtime, run_dag, task_states, xcom
from tests.runtime.batch_support import processes_logging_to
from tests.runtime.support import ENV_CACHE, SAMPLE_MODEL, RuntimeProcess, deploy
from tests.validation.foreign import DUMPS_SCORE, PLAIN_SCORE, write_package

pytestmark = pytest.mark.slow
ENDPOINT = "ops-local"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    with connected_runtime(tmp_path_factory.mktemp("ops") / "data") as runtime:
        yield runtime


@pytest.fixture(scope="module")
def client(runtime: RuntimeProcess) -> Iterator[LocalRuntimeClient]:
    with runtime.client() as client:
        client.register_model("diabetes", SAMPLE_MODEL)
        client.put_endpoint(ENDPOINT)
        deploy(client, ENDPOINT, "blue")
        client.set_traffic(ENDPOINT, {"blue": 100})
        yield client


def one_task_dag(dag_id: str, make_task) -> DAG:  # noqa: ANN001 - a task factory
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        make_task()
    return dag


def test_the_hook_gives_the_local_backend_and_it_reaches_the_runtime(client: LocalRuntimeClient) -> None:
    hook = MLPlatformHook()
    assert hook.platform.kind == "local"
    assert hook.test_connection() == (True, "local platform reachable")
    assert hook.platform.get_endpoint(ENDPOINT).traffic == {"blue": 100}


def wrong_expectation() -> SmokeTestOperator:
    """A smoke test whose expected answer the sample model never gives."""
    return SmokeTestOperator(
        task_id="wrong",
        endpoint_name=ENDPOINT,
        deployment_name="blue",
        request={"data": [[0.0] * 10]},
        expected_response=[0.0],
    )


def test_smoke_test_passes_on_the_sample_and_fails_on_a_wrong_expectation(client: LocalRuntimeClient) -> None:
    def tasks() -> None:
        SmokeTestOperator(
            task_id="good", endpoint_name=ENDPOINT, deployment_name="blue", package_path=str(SAMPLE_MODEL)
        )
        wrong_expectation()

    dag_run = run_dag(one_task_dag("smoke_local", tasks), retries=0)

    assert task_states(dag_run) == {"good": "success", "wrong": "failed"}


SLOW_RUN = "\nimport time as _time\n_run = run\n\ndef run(raw_data):\n    _time.sleep(3)\n    return _run(raw_data)\n"


def test_a_wrong_answer_fails_once_and_no_answer_in_time_is_retried(client: LocalRuntimeClient, tmp_path: Path) -> None:
    slow = shutil.copytree(SAMPLE_MODEL, tmp_path / "slow", ignore=shutil.ignore_patterns("__pycache__"))
    (slow / "score.py").write_text((slow / "score.py").read_text() + SLOW_RUN)
    client.register_model("diabetes-slow", slow)
    deploy(client, ENDPOINT, "slow", model="diabetes-slow:1")
    try:

        def tasks() -> None:
            wrong_expectation()
            SmokeTestOperator(
                task_id="too_slow", endpoint_name=ENDPOINT, deployment_name="slow", package_path=str(slow),
                timeout_s=0.5, smoke_checks={"malformed_request_4xx": "off"},
            )  # fmt: skip
            SmokeTestOperator(
                task_id="no_such_endpoint", endpoint_name="ops-nowhere", deployment_name="blue",
                package_path=str(SAMPLE_MODEL),
            )  # fmt: skip

        dag = one_task_dag("smoke_retries_local", tasks)
        for task in dag.tasks:
            task.retries, task.retry_delay = 1, timedelta(0)
        dag_run = run_dag(dag)
    finally:
        client.delete_deployment(ENDPOINT, "slow")

    assert task_states(dag_run) == {"wrong": "failed", "too_slow": "failed", "no_such_endpoint": "failed"}
    tries = {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}
    assert tries == {"wrong": 1, "too_slow": 2, "no_such_endpoint": 1}, "only no answer in time is retried"


def test_a_foreign_score_py_that_crashes_on_bad_json_passes_with_a_recorded_warning(
    client: LocalRuntimeClient, tmp_path: Path
) -> None:
    python = EnvironmentCache(ENV_CACHE).ensure(SAMPLE_MODEL / "requirements.txt")
    package = tmp_path / "iris"
    write_package(python, package, PLAIN_SCORE)
    client.register_model("iris", package)
    deploy(client, ENDPOINT, "iris", model="iris:1")
    try:

        def task() -> None:
            SmokeTestOperator(
                task_id="smoke", endpoint_name=ENDPOINT, deployment_name="iris", package_path=str(package)
            )

        dag_run = run_dag(one_task_dag("smoke_foreign_local", task), retries=0)
        assert task_states(dag_run) == {"smoke": "success"}
        [warning] = xcom(dag_run, "smoke")["warnings"]
        assert "malformed_request_4xx" in warning and "HTTP 500" in warning and "AMLResponse" in warning
        assert client.get_endpoint(ENDPOINT)["traffic"] == {"blue": 100}, "a smoke test moves no traffic"
    finally:
        client.delete_deployment(ENDPOINT, "iris")


def test_a_score_py_returning_json_dumps_passes_its_samples_with_a_note_on_the_double_encoding(
    client: LocalRuntimeClient, tmp_path: Path
) -> None:
    python = EnvironmentCache(ENV_CACHE).ensure(SAMPLE_MODEL / "requirements.txt")
    package = tmp_path / "iris-dumps"
    trained = write_package(python, package, DUMPS_SCORE)
    client.register_model("iris-dumps", package)
    deploy(client, ENDPOINT, "dumps", model="iris-dumps:1")
    try:
        uri, key = client.get_endpoint(ENDPOINT)["scoring_uri"], client.keys(ENDPOINT)["primary_key"]
        answer = client.score(uri, (package / "sample-request.json").read_bytes(), key, deployment="dumps")
        assert answer.body == json.dumps(trained["labels"][:2]), "the server answers the JSON string run() returned"

        def task() -> None:
            SmokeTestOperator(
                task_id="smoke", endpoint_name=ENDPOINT, deployment_name="dumps", package_path=str(package)
            )

        dag_run = run_dag(one_task_dag("smoke_dumps_local", task), retries=0)
        assert task_states(dag_run) == {"smoke": "success"}
        outcomes = {o["check"]: o for o in xcom(dag_run, "smoke")["checks"]["outcomes"] if o["sample"]}
        assert outcomes["answer_is_json"]["passed"] and outcomes["sample_answers"]["passed"]
        assert outcomes["sample_answers"]["detail"].startswith("matches once decoded")
    finally:
        client.delete_deployment(ENDPOINT, "dumps")


def test_a_deployment_that_cannot_provision_is_removed_again(client: LocalRuntimeClient, tmp_path: Path) -> None:
    broken = shutil.copytree(SAMPLE_MODEL, tmp_path / "broken")
    requirements = broken / "requirements.txt"
    requirements.write_text(requirements.read_text() + "deployflow-no-such-package==0.0.0\n")
    model = client.register_model("broken", broken)

    def task() -> None:
        CreateDeploymentOperator(
            task_id="deploy",
            endpoint_name=ENDPOINT,
            deployment_name="broken",
            model=f"broken:{model['version']}",
            deferrable=True,
            poll_interval=0.2,
            timeout_s=300,
        )

    dag_run = run_dag(one_task_dag("deploy_broken_local", task), retries=0)

    assert task_states(dag_run) == {"deploy": "failed"}
    assert [d["name"] for d in client.list_deployments(ENDPOINT)] == ["blue"]


def test_delete_refuses_a_deployment_with_live_traffic_and_removes_one_without(client: LocalRuntimeClient) -> None:
    deploy(client, ENDPOINT, "spare")

    def tasks() -> None:
        DeleteDeploymentOperator(task_id="delete_blue", endpoint_name=ENDPOINT, deployment_name="blue")
        DeleteDeploymentOperator(task_id="delete_spare", endpoint_name=ENDPOINT, deployment_name="spare")
        DeleteDeploymentOperator(task_id="delete_missing", endpoint_name=ENDPOINT, deployment_name="nothing")

    dag = one_task_dag("delete_local", tasks)
    for task in dag.tasks:
        task.retries, task.retry_delay = 1, timedelta(0)
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"delete_blue": "failed", "delete_spare": "success", "delete_missing": "success"}
    assert dag_run.get_task_instance("delete_blue").try_number == 1, "live traffic stays live: not retried"
    assert [d["name"] for d in client.list_deployments(ENDPOINT)] == ["blue"]


def test_trigger_serialises_every_argument_and_reports_a_ready_deployment(client: LocalRuntimeClient) -> None:
    trigger = DeploymentStateTrigger(
        ml_platform_conn_id="deployflow_local",
        endpoint_name=ENDPOINT,
        deployment_name="blue",
        deadline=time.time() + 30,
        poll_interval=0.1,
    )
    path, kwargs = trigger.serialize()
    assert path == "deployflow.triggers.ml_platform.DeploymentStateTrigger"
    rebuilt = DeploymentStateTrigger(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)

    event = asyncio.run(_first_event(rebuilt))
    assert event.payload["status"] == "success"
    assert event.payload["deployment"]["provisioning_state"] == "Succeeded"


def test_trigger_reports_a_missing_deployment_as_an_error(client: LocalRuntimeClient) -> None:
    trigger = DeploymentStateTrigger(
        ml_platform_conn_id="deployflow_local",
        endpoint_name=ENDPOINT,
        deployment_name="ghost",
        deadline=time.time() + 5,
    )
    event = asyncio.run(_first_event(trigger))
    assert event.payload["status"] == "error"
    assert "ghost" in event.payload["message"]


def test_a_task_stopped_while_deferred_removes_the_deployment_it_was_creating(
    client: LocalRuntimeClient, runtime: RuntimeProcess, tmp_path: Path
) -> None:
    slow = shutil.copytree(SAMPLE_MODEL, tmp_path / "slow", ignore=shutil.ignore_patterns("__pycache__"))
    score = slow / "score.py"
    score.write_text(score.read_text().replace("def init() -> None:\n", "def init() -> None:\n    time.sleep(300)\n"))
    score.write_text(score.read_text().replace("import json\n", "import json\nimport time\n", 1))
    model = client.register_model("slow-init", slow)
    operator = CreateDeploymentOperator(
        task_id="deploy", endpoint_name=ENDPOINT, deployment_name="slowinit", model=f"slow-init:{model['version']}",
        deferrable=True, poll_interval=0.2, timeout_s=600,
    )  # fmt: skip
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": mock.Mock()})  # type: ignore[arg-type]
    path, kwargs = deferred.value.trigger.serialize()
    assert path == "deployflow.triggers.ml_platform.DeploymentStateTrigger" and kwargs["delete_on_kill"] is True
    trigger = DeploymentStateTrigger(**kwargs)  # as the triggerer rebuilds it
    replica_logs = str(runtime.data_dir / "logs" / ENDPOINT / "slowinit")
    deadline = time.monotonic() + 300
    while not processes_logging_to(lambda stderr: stderr.startswith(replica_logs)):
        assert time.monotonic() < deadline, "the deployment's replica did not start"
        time.sleep(0.2)
    assert client.get_deployment(ENDPOINT, "slowinit")["provisioning_state"] == "Creating"

    asyncio.run(trigger.on_kill())  # the user marked the deferred task failed

    assert [d["name"] for d in client.list_deployments(ENDPOINT)] == ["blue"]
    deadline = time.monotonic() + 30
    while processes_logging_to(lambda stderr: stderr.startswith(replica_logs)):
        assert time.monotonic() < deadline, "the removed deployment's replica is still running"
        time.sleep(0.2)


def test_a_trigger_for_an_updated_deployment_leaves_it_when_the_task_is_stopped(client: LocalRuntimeClient) -> None:
    deploy(client, ENDPOINT, "kept")  # no traffic: the runtime would let it be deleted
    trigger = DeploymentStateTrigger(
        ml_platform_conn_id="deployflow_local", endpoint_name=ENDPOINT, deployment_name="kept", deadline=time.time() + 5
    )
    asyncio.run(trigger.on_kill())
    assert client.get_deployment(ENDPOINT, "kept")["provisioning_state"] == "Succeeded"
    client.delete_deployment(ENDPOINT, "kept")


async def _first_event(trigger: DeploymentStateTrigger):  # noqa: ANN202 - a TriggerEvent
    async for event in trigger.run():
        return event
    raise AssertionError("the trigger ended without an event")


def test_validate_takes_the_latest_registered_model_and_refuses_an_unknown_one_without_retrying(
    client: LocalRuntimeClient, tmp_path: Path
) -> None:
    retrained = shutil.copytree(SAMPLE_MODEL, tmp_path / "v-next", ignore=shutil.ignore_patterns("__pycache__"))
    (retrained / "README.txt").write_text("the same model, registered again as a new version\n")
    client.register_model("diabetes-latest", SAMPLE_MODEL)
    newest = client.register_model("diabetes-latest", retrained)

    def tasks() -> None:
        ValidateModelPackageOperator(task_id="latest", model="diabetes-latest", package_path=None)
        ValidateModelPackageOperator(task_id="unknown", model="no-such-model:1", package_path=None)
        RegisterModelOperator(
            task_id="register", package_path=None, model_name="ignored",
            registered="{{ ti.xcom_pull(task_ids='latest')['model'] }}",
        )  # fmt: skip

    dag = one_task_dag("validate_registered_local", tasks)
    dag.get_task("latest") >> dag.get_task("register")
    for task in dag.tasks:
        task.retries, task.retry_delay = 1, timedelta(0)
    dag_run = run_dag(dag)

    assert task_states(dag_run) == {"latest": "success", "unknown": "failed", "register": "success"}
    tries = {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}
    assert tries["unknown"] == 1, "a model that does not exist is not retried"
    report = xcom(dag_run, "latest")
    assert report["model"] == f"diabetes-latest:{newest['version']}" and report["package"] == newest["path"]
    assert xcom(dag_run, "register") == report["model"], "nothing new is registered"
    assert len([m for m in client.list_models() if m["name"] == "diabetes-latest"]) == 2
