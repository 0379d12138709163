"""The `deployflow` command on Azure ML: the real backend and SDK over the fake workspace's transport."""

from __future__ import annotations

import json

import pytest

from deployflow_cli import main as cli
from tests.azureml.transport import WORKSPACE_ID


@pytest.fixture
def on_azure(monkeypatch: pytest.MonkeyPatch, azure_platform, fake_azure):
    """`--conn-id` resolves to the Azure ML backend over the fake workspace, which has ep-1."""
    monkeypatch.setattr(cli, "connect", lambda args: azure_platform)
    fake_azure.put_resource(
        "onlineEndpoints/ep-1", {"location": "westeurope", "properties": {"authMode": "Key", "traffic": {"blue": 100}}}
    )
    return azure_platform


def deployed(fake_azure, name: str) -> None:
    body = {
        "location": "westeurope",
        "sku": {"name": "Default", "capacity": 1},
        "properties": {
            "endpointComputeType": "Managed",
            "instanceType": "Standard_DS3_v2",
            "model": f"{WORKSPACE_ID}/models/diabetes/versions/3",
            "scaleSettings": {"scaleType": "Default"},
        },
    }
    fake_azure.put_resource(f"onlineEndpoints/ep-1/deployments/{name}", body)


def test_endpoints_list_and_show_read_the_workspace(on_azure, fake_azure, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["endpoints", "list", "--conn-id", "azure_ml_default", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["name"] == "ep-1" and row["traffic"] == {"blue": 100}
    assert row["scoring_uri"].startswith("https://ep-1.") and row["scoring_uri"].endswith("/score")

    deployed(fake_azure, "blue")
    deployed(fake_azure, "green")
    fake_azure.resource("onlineEndpoints/ep-1")["properties"]["traffic"] = {"blue": 90, "green": 10}
    assert cli.main(["endpoints", "show", "ep-1", "--conn-id", "azure_ml_default"]) == 0
    shown = capsys.readouterr().out
    assert "blue=90 green=10" in shown
    assert "blue" in shown and "green" in shown


def test_a_missing_endpoint_on_azure_exits_1_with_its_name(on_azure, capsys) -> None:
    assert cli.main(["endpoints", "show", "ep-x", "--conn-id", "azure_ml_default", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "ep-x" in captured.err
