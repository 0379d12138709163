"""Models on Azure ML: MLflow folders registered whole as mlflow_model and deployed with no code or
environment (and batch-scored by deployflow's MLflow batch script); registered versions read by name
(latest) and downloaded as the package to validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from azure.ai.ml.entities import Model
from azure.core.exceptions import ResourceNotFoundError

from deployflow.azureml.batch import ENTRY_SCRIPT, MLFLOW_SCRIPT
from deployflow.packages import MLFLOW_BATCH_SCRIPT
from deployflow.platform import DeploymentSpec, EndpointSpec, ModelRef, PlatformError, PlatformNotFoundError
from deployflow.platform.batch import BatchInput, BatchJobSpec


@pytest.fixture
def mlflow_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "iris-mlflow"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n")
    (folder / "model.pkl").write_bytes(b"not really a model")
    (folder / "requirements.txt").write_text("mlflow==3.18.0\nscikit-learn==1.9.1\n")
    return folder


def test_an_mlflow_model_is_registered_whole_and_deployed_with_no_scoring_script_or_environment(
    azure_platform, fake_azure, mlflow_folder: Path
) -> None:
    ref = azure_platform.register_model("iris", str(mlflow_folder), version="1")
    azure_platform.create_or_update_endpoint(EndpointSpec("ep-mlflow"), timeout_s=30)
    azure_platform.begin_create_or_update_deployment(
        DeploymentSpec(endpoint="ep-mlflow", name="blue", model=ref, package_path=str(mlflow_folder))
    )
    done = azure_platform.wait_for_deployment("ep-mlflow", "blue", timeout_s=30, poll_s=0.01)

    [model] = [r.body for r in fake_azure.requests_to("PUT", r"/models/iris/versions/1$")]
    assert model["properties"]["modelType"] == "mlflow_model"
    assert any(name.endswith("iris-mlflow/MLmodel") for name in fake_azure.state.blobs), "the whole folder"
    [deployment] = [r.body for r in fake_azure.requests_to("PUT", r"/onlineEndpoints/ep-mlflow/deployments/blue$")]
    properties = deployment["properties"]
    assert "codeConfiguration" not in properties and "environmentId" not in properties, "Azure ML's no-code path"
    assert properties["model"].endswith("/models/iris/versions/1")
    assert done.provisioning_state == "Succeeded"
    assert fake_azure.refused == [], fake_azure.refused


def mlflow_batch_job(package: Path, scoring_script: str | None = None) -> BatchJobSpec:
    return BatchJobSpec(
        name="iris-nightly", model=ModelRef("iris", "1"), package_path=str(package), scoring_script=scoring_script,
        input=BatchInput(uri="wasbs://incoming@acct.blob.core.windows.net/iris/2026-12-04"),
        output_uri="azureml://datastores/workspaceblobstore/paths/scores/iris/2026-12-04", compute="cpu-cluster",
    )  # fmt: skip


def test_a_batch_job_of_an_mlflow_model_with_no_script_uploads_and_runs_deployflows(
    azure_platform, fake_azure, mlflow_folder: Path
) -> None:
    azure_platform.register_model("iris", str(mlflow_folder), version="1")
    azure_platform.ensure_batch_cluster("cpu-cluster", size="Standard_DS3_v2", max_instances=2, timeout_s=30)
    before = set(fake_azure.state.blobs)

    state = azure_platform.submit_batch_job(mlflow_batch_job(mlflow_folder))

    [job] = [r.body for r in fake_azure.requests_to("PUT", r"/jobs/[^/]+$")]
    step = job["properties"]["jobs"]["score"]
    assert step["inputs"]["model"]["job_input_type"] == "mlflow_model"
    assert step["task"]["entry_script"] == ENTRY_SCRIPT
    assert f"--deployflow_script {MLFLOW_SCRIPT} " in step["task"]["program_arguments"]
    code = {name.rsplit("/", 1)[1]: body for name, body in fake_azure.state.blobs.items() if name not in before}
    assert code.get(MLFLOW_SCRIPT) == MLFLOW_BATCH_SCRIPT.read_bytes(), sorted(code)
    assert ENTRY_SCRIPT in code and not {"model.pkl", "MLmodel"} & set(code), "only scripts go up as code"
    environments = [r.body for r in fake_azure.requests_to("PUT", r"/environments/[^/]+/versions/[^/]+$")]
    conda = yaml.safe_load(environments[-1]["properties"]["condaFile"])
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert pip[:2] == ["mlflow-skinny==3.18.0", "scikit-learn==1.9.1"] and "pandas" in pip
    assert state.status == "NotStarted"
    assert fake_azure.refused == [] and fake_azure.unhandled == [], fake_azure.refused


def test_a_batch_job_with_no_script_of_a_package_that_is_not_mlflow_is_refused_before_any_call(
    azure_platform, fake_azure, package: Path
) -> None:
    with pytest.raises(PlatformError, match=r"iris-nightly: .* names no batch scoring script and is not an MLflow"):
        azure_platform.submit_batch_job(mlflow_batch_job(package))
    with pytest.raises(PlatformError, match="has no nope.py, the batch scoring script named"):
        azure_platform.submit_batch_job(mlflow_batch_job(package, "nope.py"))

    assert fake_azure.requests_to("PUT", r".*") == []


def test_a_registered_model_is_read_by_version_or_as_the_latest(platform, ml_client) -> None:
    ml_client.models.get.return_value = Model(name="iris", version="7", path="azureml://x")

    assert platform.get_model("iris") == ModelRef("iris", "7")
    assert ml_client.models.get.call_args.kwargs == {"name": "iris", "label": "latest"}
    assert platform.get_model("iris", "7") == ModelRef("iris", "7")
    assert ml_client.models.get.call_args.kwargs == {"name": "iris", "version": "7"}


def test_a_missing_registered_model_is_not_found(platform, ml_client, sleeps) -> None:
    ml_client.models.get.side_effect = ResourceNotFoundError(message="(ResourceNotFound) no model iris")

    with pytest.raises(PlatformNotFoundError, match="iris"):
        platform.get_model("iris", "9")


def test_a_registered_model_is_downloaded_once_and_its_folder_is_the_package(
    platform, ml_client, tmp_path: Path
) -> None:
    def download(name: str, version: str, download_path: str) -> None:
        # the SDK writes a registered folder as download_path/<model name>/<the folder's own name>/
        (Path(download_path) / name / "iris-mlflow").mkdir(parents=True)
        (Path(download_path) / name / "iris-mlflow" / "MLmodel").write_text("flavors: {}\n")

    ml_client.models.download.side_effect = download

    first = platform.model_package(ModelRef("iris", "2"), tmp_path / "models")
    again = platform.model_package(ModelRef("iris", "2"), tmp_path / "models")

    assert first == again == tmp_path / "models" / "iris" / "2" / "iris" / "iris-mlflow"
    assert (first / "MLmodel").is_file()
    assert ml_client.models.download.call_count == 1
