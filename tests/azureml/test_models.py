"""Models on Azure ML: MLflow folders registered whole as mlflow_model and deployed with no code or
environment; registered versions read by name (latest) and downloaded as the package to validate."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import ManagedOnlineDeployment, Model
from azure.core.exceptions import ResourceNotFoundError

from deployflow.platform import ModelRef, PlatformNotFoundError
from tests.azureml.support import deployment_spec, poller, reload_deployment, service_endpoint


@pytest.fixture
def mlflow_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "iris-mlflow"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n")
    (folder / "model.pkl").write_bytes(b"not really a model")
    (folder / "requirements.txt").write_text("mlflow==3.18.0\nscikit-learn==1.9.1\n")
    return folder


def test_an_mlflow_folder_is_registered_whole_as_an_mlflow_model(platform, ml_client, mlflow_folder: Path) -> None:
    ml_client.models.create_or_update.return_value = Model(name="iris", version="1", path="azureml://x")

    assert platform.register_model("iris", str(mlflow_folder)) == ModelRef("iris", "1")

    (model,), _ = ml_client.models.create_or_update.call_args
    assert (model.type, model.path) == (AssetTypes.MLFLOW_MODEL, str(mlflow_folder.resolve()))
    assert model._to_rest_object().as_dict()["properties"]["modelType"] == "mlflow_model"


def test_an_mlflow_model_is_deployed_with_no_scoring_script_or_environment(
    platform, ml_client, mlflow_folder: Path
) -> None:
    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1")
    ml_client.online_deployments.begin_create_or_update.return_value = poller(done=False, status="Creating")

    platform.begin_create_or_update_deployment(deployment_spec(mlflow_folder, model=ModelRef("iris", "1")))

    (entity,), _ = ml_client.online_deployments.begin_create_or_update.call_args
    assert isinstance(entity, ManagedOnlineDeployment)
    assert entity.code_configuration is None and entity.environment is None, "Azure ML's no-code MLflow deployment"
    assert entity.model == "azureml:iris:1"
    properties = entity._to_rest_object(location="westeurope").as_dict()["properties"]
    assert "codeConfiguration" not in properties and "environmentId" not in properties
    reload_deployment(entity)


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
