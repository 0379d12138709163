"""The `deployflow` command on Azure ML, at the SDK boundary: the real backend over a spec'd MLClient."""

from __future__ import annotations

import json

import pytest

from deployflow_cli import main as cli
from tests.azureml.support import service_deployment, service_endpoint


@pytest.fixture
def on_azure(monkeypatch: pytest.MonkeyPatch, platform):
    """`--conn-id` resolves to the Azure ML backend built on the fixture's MLClient."""
    monkeypatch.setattr(cli, "connect", lambda args: platform)
    return platform


def test_endpoints_list_and_show_read_the_workspace(on_azure, ml_client, capsys: pytest.CaptureFixture[str]) -> None:
    ml_client.online_endpoints.list.return_value = iter([service_endpoint("ep-1", traffic={"blue": 100})])
    assert cli.main(["endpoints", "list", "--conn-id", "azure_ml_default", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["name"] == "ep-1" and row["traffic"] == {"blue": 100}
    assert row["scoring_uri"].startswith("https://ep-1.") and row["scoring_uri"].endswith("/score")

    ml_client.online_endpoints.get.return_value = service_endpoint("ep-1", traffic={"blue": 90, "green": 10})
    ml_client.online_deployments.list.return_value = iter(
        [service_deployment("ep-1", "blue"), service_deployment("ep-1", "green")]
    )
    assert cli.main(["endpoints", "show", "ep-1", "--conn-id", "azure_ml_default"]) == 0
    shown = capsys.readouterr().out
    assert "blue=90 green=10" in shown
    assert "blue" in shown and "green" in shown


def test_a_missing_endpoint_on_azure_exits_1_with_its_name(on_azure, ml_client, capsys) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    ml_client.online_endpoints.get.side_effect = ResourceNotFoundError("Not found: ep-x")
    assert cli.main(["endpoints", "show", "ep-x", "--conn-id", "azure_ml_default", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "ep-x" in captured.err
