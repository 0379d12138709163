"""Fixtures for the Azure ML backend's tests: a spec'd MLClient, a fast retry policy, a package."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
from marshmallow.warnings import ChangedInMarshmallow4Warning, RemovedInMarshmallow4Warning

# azure-ai-ml's schemas use marshmallow 3 APIs that marshmallow 4 drops: noise that would bury our warnings.
# Set before the SDK is imported, because it warns while its schema classes are defined.
for _noise in (ChangedInMarshmallow4Warning, RemovedInMarshmallow4Warning):
    warnings.filterwarnings("ignore", category=_noise)

from azure.ai.ml import MLClient  # noqa: E402

from deployflow.azureml import AzureMLPlatform, RetryPolicy  # noqa: E402
from tests.azureml.support import make_ml_client  # noqa: E402
from tests.azureml.transport import (  # noqa: E402
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    FakeAzureML,
    FakeCredential,
    blob_clients_through,
)


def pytest_configure(config: pytest.Config) -> None:
    # the same noise again while tests run, where pytest applies its own warning filters
    for noise in (ChangedInMarshmallow4Warning, RemovedInMarshmallow4Warning):
        config.addinivalue_line("filterwarnings", f"ignore::marshmallow.warnings.{noise.__name__}")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """There is no Azure account: a test that tries to resolve any other host fails at once."""
    resolve = socket.getaddrinfo

    def getaddrinfo(host: object, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise OSError(f"test tried to reach {host}; the Azure ML tests stay on loopback")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def ml_client() -> MagicMock:
    return make_ml_client()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def retry(sleeps: list[float]) -> RetryPolicy:
    return RetryPolicy(attempts=3, base_delay_s=1.0, max_delay_s=4.0, sleep=sleeps.append, random=lambda: 0.5)


@pytest.fixture
def platform(ml_client: MagicMock, retry: RetryPolicy):
    backend = AzureMLPlatform(ml_client, retry=retry)
    yield backend
    backend.close()


@pytest.fixture
def package(tmp_path: Path) -> Path:
    root = tmp_path / "diabetes"
    (root / "model").mkdir(parents=True)
    (root / "model" / "model.joblib").write_bytes(b"not really a model")
    (root / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw_data):\n    return raw_data\n")
    (root / "requirements.txt").write_text(
        "# the model's environment\nazureml-inference-server-http==1.5.1\nscikit-learn==1.9.1  # the model\n"
    )
    return root


@pytest.fixture
def fake_azure(monkeypatch: pytest.MonkeyPatch) -> FakeAzureML:
    """A fake workspace behind the real SDK's HTTP pipeline, blob uploads included."""
    import azure.ai.ml._artifacts._blob_storage_helper as blob_helper

    fake = FakeAzureML()
    for name, client in blob_clients_through(fake).items():
        monkeypatch.setattr(blob_helper, name, client)
    return fake


@pytest.fixture
def azure_platform(fake_azure: FakeAzureML, retry: RetryPolicy):
    """The real backend over the real MLClient, talking to the fake workspace."""
    client = MLClient(
        FakeCredential(),
        SUBSCRIPTION,
        RESOURCE_GROUP,
        WORKSPACE,
        transport=fake_azure,
        enable_telemetry=False,
        show_progress=False,
    )
    backend = AzureMLPlatform(client, retry=retry)
    yield backend
    backend.close()
