"""Models on Azure ML: MLflow folders registered whole as mlflow_model and deployed with no code or
environment; registered versions read by name (latest) and downloaded as the package to validate."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.ai.ml.entities import Model
from azure.core.exceptions import ResourceNotFoundError

from deployflow.platform import DeploymentSpec, EndpointSpec, ModelRef, PlatformNotFoundError


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
