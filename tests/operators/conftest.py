"""The Azure ML operator tests share the SDK-boundary fixtures of tests/azureml."""

from tests.azureml.conftest import loopback_only, pytest_configure  # noqa: F401
