"""The Azure ML operator tests share the fixtures of tests/azureml: the SDK boundary, and the fake
workspace behind the HTTP transport with its fast retry policy."""

from tests.azureml.conftest import fake_azure, loopback_only, pytest_configure, retry, sleeps  # noqa: F401
