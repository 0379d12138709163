"""Batch scoring on Azure ML: a pipeline job with one parallel step, its status, cancel, the cluster."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import yaml
from azure.ai.ml import load_compute
from azure.ai.ml.entities import AmlCompute, KubernetesCompute, PipelineJob
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from deployflow.azureml.batch import ENTRY_SCRIPT, FAILURES_TAG, OUTPUT_TAG, THRESHOLD_TAG, job_status
from deployflow.azureml.conda import PARALLEL_RUNTIME
from deployflow.azureml.entities import BASE_IMAGE
from deployflow.platform import ModelRef, PlatformError
from deployflow.platform.batch import BatchInput, BatchJobSpec
from deployflow.platform.errors import PlatformNotFoundError
from tests.azureml.support import poller, reload_pipeline_job, service_job

INPUT = "wasbs://incoming@acct.blob.core.windows.net/diabetes/2024-06-01"
OUTPUT = "azureml://datastores/workspaceblobstore/paths/scores/diabetes/2024-06-01"


def batch_spec(package: Path, **overrides) -> BatchJobSpec:
    """A job over a blob prefix with every setting away from its default."""
    values = {
        "name": "nightly-scoring",
        "model": ModelRef("diabetes", "3"),
        "package_path": str(package),
        "scoring_script": "batch_score.py",
        "input": BatchInput(uri=INPUT),
        "output_uri": OUTPUT,
        "mini_batch_size": 5,
        "error_threshold": 10,
        "max_retries": 2,
        "timeout_s": 300,
        "instance_count": 3,
        "max_concurrency_per_instance": 4,
        "compute": "cpu-cluster",
        "environment_variables": {"LOG_LEVEL": "debug"},
    }
    return BatchJobSpec(**{**values, **overrides})


@pytest.fixture
def batch_package(package: Path) -> Path:
    (package / "batch_score.py").write_text("def init():\n    pass\n\n\ndef run(mini_batch):\n    return mini_batch\n")
    return package


class Submission:
    """What the backend handed to ``jobs.create_or_update``, checked while the call lasts: the staged
    code folder it points at is removed once the SDK has uploaded it."""

    def __init__(self, ml_client, answer) -> None:
        self.job: PipelineJob | None = None
        self.code_files: list[str] = []
        ml_client.jobs.create_or_update.side_effect = lambda job, **kwargs: self._take(job, kwargs, answer)

    def _take(self, job, kwargs, answer):
        assert kwargs == {"experiment_name": "nightly-scoring"}
        assert isinstance(job, PipelineJob)
        reload_pipeline_job(job)
        code = Path(job._to_rest_object().as_dict()["properties"]["jobs"]["score"]["task"]["code"])
        self.code_files = sorted(p.relative_to(code).as_posix() for p in code.rglob("*") if p.is_file())
        self.job = job
        return answer


def test_submit_sends_one_parallel_step_the_service_accepts(platform, ml_client, batch_package) -> None:
    submission = Submission(ml_client, service_job(tags={OUTPUT_TAG: OUTPUT}))

    state = platform.submit_batch_job(batch_spec(batch_package), storage_connection_string="UseDevelopmentStorage=1")

    assert (state.job_id, state.status, state.output_uri, state.done) == ("sharp_lime_9x2k", "Queued", OUTPUT, False)
    job = submission.job
    sent = job._to_rest_object().as_dict()["properties"]
    assert sent["settings"] == {"default_compute": "cpu-cluster", "force_rerun": True, "_source": "CLASS"}
    assert (sent["experimentName"], sent["displayName"]) == ("nightly-scoring", "nightly-scoring")
    failures = sent["tags"].pop(FAILURES_TAG)
    assert re.fullmatch(rf"{OUTPUT}/_failed_files/[0-9a-f]{{32}}", failures), failures
    assert sent["tags"] == {OUTPUT_TAG: OUTPUT, THRESHOLD_TAG: "10"}
    step = sent["jobs"]["score"]
    assert step["type"] == "parallel"
    assert step["inputs"] == {
        "job_data_path": {"uri": INPUT, "mode": "ReadOnlyMount", "job_input_type": "uri_folder"},
        "model": {"uri": "azureml:diabetes:3", "mode": "Download", "job_input_type": "custom_model"},
    }
    assert step["outputs"] == {
        "job_output_file": {
            "uri": f"{OUTPUT}/predictions.csv",
            "mode": "ReadWriteMount",
            "job_output_type": "uri_file",
        },
        "failed_files": {"uri": failures, "mode": "ReadWriteMount", "job_output_type": "uri_folder"},
    }
    assert step["input_data"] == "${{inputs.job_data_path}}"
    assert (step["mini_batch_size"], step["error_threshold"], step["logging_level"]) == (5, 10, "INFO")
    assert step["retry_settings"] == {"max_retries": 2, "timeout": 300}
    assert step["resources"] == {"instance_count": 3}
    assert step["max_concurrency_per_instance"] == 4
    assert step["environment_variables"] == {"LOG_LEVEL": "debug", "DEPLOYFLOW_MODEL": "diabetes:3"}
    task = step["task"]
    assert (task["type"], task["entry_script"]) == ("run_function", ENTRY_SCRIPT)
    assert task["program_arguments"] == (
        "--model_dir ${{inputs.model}} --deployflow_script batch_score.py "
        "--deployflow_failed ${{outputs.failed_files}} --deployflow_input ${{inputs.job_data_path}}"
    )
    # the package's code and deployflow's entry script, not the model's files (they are the model input)
    assert Path(task["code"]).name == batch_package.name
    assert submission.code_files == ["batch_score.py", ENTRY_SCRIPT, "requirements.txt", "score.py"]
    assert task["append_row_to"] == "${{outputs.job_output_file}}"
    assert task["environment"]["image"] == BASE_IMAGE
    pip = task["environment"]["conda_file"]["dependencies"][-1]["pip"]
    # the model's requirements, then what the parallel step's driver needs on the cluster
    assert pip == ["azureml-inference-server-http==1.5.1", "scikit-learn==1.9.1", *PARALLEL_RUNTIME]
    # a deterministic step would hand back an earlier run's predictions for a prefix with new files in it
    assert job.jobs["score"].component._to_dict()["is_deterministic"] is False


def test_a_local_folder_is_uploaded_by_the_sdk(platform, ml_client, batch_package, tmp_path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    submission = Submission(ml_client, service_job())

    platform.submit_batch_job(batch_spec(batch_package, input=BatchInput(uri=f"file://{folder}")))

    data = submission.job._to_rest_object().as_dict()["properties"]["jobs"]["score"]["inputs"]["job_data_path"]
    assert data == {"uri": str(folder), "mode": "ReadOnlyMount", "job_input_type": "uri_folder"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"input": BatchInput(uri=INPUT, files=("a.csv", "b.csv"))}, "lists 2 file.*whole folders or blob prefixes"),
        ({"input": BatchInput(uri="blob://incoming/diabetes")}, "cannot read blob://incoming/diabetes"),
        ({"input": BatchInput(uri="/no/such/folder")}, "input folder /no/such/folder does not exist"),
        ({"output_uri": "/tmp/scores"}, "output_uri /tmp/scores must be an Azure ML datastore URI"),
        ({"compute": None}, "has no compute.*ensure_batch_cluster"),
        ({"scoring_script": "missing.py"}, "has no missing.py"),
    ],
)
def test_what_azure_ml_cannot_run_is_refused_before_any_call(
    platform, ml_client, batch_package, overrides, message
) -> None:
    with pytest.raises(PlatformError, match=f"batch job nightly-scoring.*{message}"):
        platform.submit_batch_job(batch_spec(batch_package, **overrides))
    ml_client.jobs.create_or_update.assert_not_called()


def test_a_rejected_job_names_the_job_and_is_not_retried(platform, ml_client, batch_package, sleeps) -> None:
    error = HttpResponseError(message="(UserError) Compute cpu-cluster is not an AmlCompute")
    error.status_code = 400
    ml_client.jobs.create_or_update.side_effect = error

    with pytest.raises(PlatformError, match="submit batch job nightly-scoring .*HTTP 400.*not an AmlCompute") as caught:
        platform.submit_batch_job(batch_spec(batch_package))

    assert caught.value.status_code == 400
    assert ml_client.jobs.create_or_update.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("azure", "contract", "done"),
    [
        ("NotStarted", "NotStarted", False),
        ("Preparing", "Preparing", False),
        ("Running", "Running", False),
        ("Finalizing", "Finalizing", False),
        ("CancelRequested", "CancelRequested", False),
        ("Completed", "Completed", True),
        ("Failed", "Failed", True),
        ("NotResponding", "Failed", True),
        ("Canceled", "Canceled", True),
    ],
)
def test_get_reports_the_status_in_the_contracts_words(platform, ml_client, azure, contract, done) -> None:
    ml_client.jobs.get.return_value = service_job(status=azure, tags={OUTPUT_TAG: OUTPUT})

    state = platform.get_batch_job("sharp_lime_9x2k")

    ml_client.jobs.get.assert_called_once_with(name="sharp_lime_9x2k")
    assert (state.status, state.done, state.output_uri) == (contract, done, OUTPUT)
    assert (state.error is not None) == (contract == "Failed")


def test_a_failed_job_points_at_its_logs(platform, ml_client) -> None:
    ml_client.jobs.get.return_value = service_job(status="Failed")
    state = platform.get_batch_job("sharp_lime_9x2k")
    assert state.error == (
        "Azure ML job sharp_lime_9x2k ended Failed; see its logs in Azure ML studio: "
        "https://ml.azure.com/runs/sharp_lime_9x2k"
    )


def test_status_words_from_enums_and_other_cases() -> None:
    assert job_status(None) == "Unknown"
    assert job_status("cancelled") == "Canceled"
    assert job_status(service_job(status="Completed").status) == "Completed"


def test_cancel_requests_cancellation_then_reads_the_job(platform, ml_client) -> None:
    ml_client.jobs.get.side_effect = [service_job(status="Running"), service_job(status="CancelRequested")]
    ml_client.jobs.begin_cancel.return_value = poller()

    state = platform.cancel_batch_job("sharp_lime_9x2k")

    ml_client.jobs.begin_cancel.assert_called_once_with(name="sharp_lime_9x2k")
    assert (state.status, state.done) == ("CancelRequested", False)


def test_cancel_leaves_a_finished_job_alone(platform, ml_client) -> None:
    ml_client.jobs.get.return_value = service_job(status="Completed")
    assert platform.cancel_batch_job("sharp_lime_9x2k").status == "Completed"
    ml_client.jobs.begin_cancel.assert_not_called()


def test_an_unknown_job_is_not_found(platform, ml_client) -> None:
    ml_client.jobs.get.side_effect = ResourceNotFoundError(message="(UserError) Run nope was not found")
    with pytest.raises(PlatformNotFoundError, match="get batch job nope"):
        platform.get_batch_job("nope")


def test_a_missing_cluster_is_created_with_the_settings_given(platform, ml_client) -> None:
    ml_client.compute.get.side_effect = ResourceNotFoundError(message="(ResourceNotFound) no such compute")
    put = poller()
    ml_client.compute.begin_create_or_update.return_value = put

    created = platform.ensure_batch_cluster(
        "cpu-cluster", size="STANDARD_D4S_V3", max_instances=4, min_instances=1, timeout_s=600
    )

    assert created is True
    ml_client.compute.get.assert_called_once_with(name="cpu-cluster")
    (cluster,), kwargs = ml_client.compute.begin_create_or_update.call_args
    assert kwargs == {}
    assert type(cluster) is AmlCompute
    sent = cluster._to_rest_object().as_dict()["properties"]
    assert sent["computeType"] == "AmlCompute"
    assert sent["properties"]["vmSize"] == "STANDARD_D4S_V3"
    assert sent["properties"]["scaleSettings"] == {
        "maxNodeCount": 4,
        "minNodeCount": 1,
        "nodeIdleTimeBeforeScaleDown": "PT2M",
    }
    loaded = load_compute(io.StringIO(yaml.safe_dump(json.loads(json.dumps(cluster._to_dict())))))
    assert loaded._to_rest_object().as_dict()["properties"] == sent
    put.result.assert_called_once_with(timeout=600)


def test_a_present_cluster_is_left_as_it_is(platform, ml_client, caplog) -> None:
    ml_client.compute.get.return_value = AmlCompute(name="cpu-cluster", size="STANDARD_DS3_V2", max_instances=2)
    with caplog.at_level("INFO", logger="deployflow.azureml.cluster"):
        assert platform.ensure_batch_cluster("cpu-cluster", size="STANDARD_D4S_V3", max_instances=4) is False
    ml_client.compute.begin_create_or_update.assert_not_called()
    assert "compute cluster cpu-cluster already exists (size STANDARD_DS3_V2); left as it is" in caplog.text


def test_a_name_taken_by_another_kind_of_compute_is_refused(platform, ml_client) -> None:
    ml_client.compute.get.return_value = KubernetesCompute(name="cpu-cluster", namespace="azureml")
    with pytest.raises(PlatformError, match="already has a compute cpu-cluster of type kubernetes"):
        platform.ensure_batch_cluster("cpu-cluster", size="STANDARD_D4S_V3", max_instances=4)
    ml_client.compute.begin_create_or_update.assert_not_called()
