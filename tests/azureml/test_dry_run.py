"""The dry-run backend: the real SDK builds every request, the simulated workspace answers, and
the request list (method, path, masked body, spec verdict) is written down; nothing is sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowSkipException

from deployflow.azureml.dry_run import REQUESTS_FILE, dry_run_platform, mask_secrets
from deployflow.hooks.ml_platform import MLPlatformHook
from deployflow.platform import DeploymentSpec, EndpointSpec, ModelRef, PlatformError, Resources

WORKSPACE = {"subscription_id": "11111111-2222-3333-4444-555555555555", "resource_group": "rg", "workspace_name": "ws"}


def recorded(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / REQUESTS_FILE).read_text().splitlines()]


@pytest.fixture
def dry(tmp_path: Path):
    platform = dry_run_platform(tmp_path / "dry", **WORKSPACE)
    yield platform
    platform.close()


def test_a_release_on_kubernetes_is_recorded_valid_and_remembered_by_the_next_platform(dry, package, tmp_path):
    dry.register_model("diabetes", str(package), version="3")
    dry.create_or_update_endpoint(EndpointSpec("ep-prod", compute="aks-prod"), timeout_s=5)
    spec = DeploymentSpec(
        endpoint="ep-prod",
        name="blue",
        model=ModelRef("diabetes", "3"),
        package_path=str(package),
        resources=Resources(cpu=0.5, memory_gb=1.0),
        environment_variables={"STORAGE_KEY": "very-secret-value", "LOG_LEVEL": "info"},
    )
    dry.begin_create_or_update_deployment(spec)
    # another task (a new platform on the same folder) sees the deployment, already come up
    again = dry_run_platform(tmp_path / "dry", **WORKSPACE)
    assert again.get_deployment("ep-prod", "blue").provisioning_state == "Succeeded"
    again.set_traffic("ep-prod", traffic={"blue": 100}, timeout_s=5)

    requests = recorded(tmp_path / "dry")
    puts = {r["url"].rsplit("/", 1)[-1]: r for r in requests if r["method"] == "PUT" and r["spec"]}
    assert {"3", "ep-prod", "blue"} <= set(puts)
    assert all(r["valid"] for r in requests if r["spec"]), [r["errors"] for r in requests if r["errors"]]
    deployment = puts["blue"]["body"]["properties"]
    assert deployment["instanceType"] == "cpu500m-mem1gi"
    assert deployment["environmentVariables"]["STORAGE_KEY"] == "***"
    assert deployment["environmentVariables"]["LOG_LEVEL"] == "info"
    traffic = [r for r in requests if r["method"] == "PUT" and r["url"].endswith("/onlineEndpoints/ep-prod")]
    assert traffic[-1]["body"]["properties"]["traffic"] == {"blue": 100}
    assert any(
        r["url"].startswith("https://wsstorage.blob.") and (r["body"] or {}).get("bytes", 0) > 0 for r in requests
    )
    assert "very-secret-value" not in (tmp_path / "dry" / REQUESTS_FILE).read_text()
    assert dry.workspace.assumed_computes() == {"aks-prod": ["cpu500m-mem1gi"]}


def test_a_body_the_service_would_refuse_is_recorded_invalid_and_fails_the_call(dry, tmp_path):
    from azure.core.rest import HttpRequest

    body = {"location": "westeurope", "properties": {"authMode": "Certificate"}}
    url = f"https://management.azure.com{dry.workspace.workspace_id}/onlineEndpoints/ep-x?api-version=2025-12-01"
    request = HttpRequest("PUT", url, headers={"Content-Type": "application/json"}, content=json.dumps(body))

    answer = dry.workspace.send(request)

    assert answer.status_code == 400
    (entry,) = recorded(tmp_path / "dry")
    assert entry["valid"] is False and entry["spec"] == "OnlineEndpointTrackedResource"
    assert any("authMode" in e for e in entry["errors"])


def test_a_scoring_request_is_recorded_not_sent_and_skips_the_task(dry, tmp_path):
    dry.create_or_update_endpoint(EndpointSpec("ep-test"), timeout_s=5)

    with pytest.raises(AirflowSkipException, match="dry run: not sent: a scoring request to endpoint ep-test"):
        dry.invoke("ep-test", {"data": [[1, 2]]}, deployment="candidate")
    with pytest.raises(AirflowSkipException, match="load on the scoring URI"):
        dry.scoring_headers("ep-test")

    not_sent = [r for r in recorded(tmp_path / "dry") if r.get("note")]
    assert not_sent[0]["url"] == "https://ep-test.westeurope.inference.ml.azure.com/score"
    assert not_sent[0]["body"] == {"data": [[1, 2]]} and "candidate" in not_sent[0]["note"]


def test_secrets_are_masked_by_name_and_sas_signatures_cut() -> None:
    masked = mask_secrets(
        {
            "primaryKey": "pk-1",
            "nested": {"sasUri": "https://a/b?sv=1&sig=abc"},
            "uri": "https://a/b?sv=1&sig=abc&se=2",
            "env": [{"name": "API_TOKEN", "value": "t"}, {"name": "MODE", "value": "fast"}],
        }
    )
    assert masked == {
        "primaryKey": "***",
        "nested": {"sasUri": "***"},
        "uri": "https://a/b?sv=1&sig=***&se=2",
        "env": [{"name": "API_TOKEN", "value": "***"}, {"name": "MODE", "value": "fast"}],
    }


def test_the_connection_extra_and_the_conn_id_prefix_choose_the_dry_run(monkeypatch, tmp_path) -> None:
    extra = {**WORKSPACE, "dry_run_dir": str(tmp_path / "by-extra")}
    monkeypatch.setenv(
        "AIRFLOW_CONN_AML_DRY", json.dumps({"conn_type": "azure_ml", "extra": {**extra, "dry_run": True}})
    )
    monkeypatch.setenv("AIRFLOW_CONN_AML_REAL", json.dumps({"conn_type": "azure_ml", "extra": extra}))
    monkeypatch.setenv("AIRFLOW_CONN_LOCAL", json.dumps({"conn_type": "deployflow_local", "password": "t"}))

    assert type(MLPlatformHook("aml_dry").platform).__name__ == "DryRunAzureMLPlatform"
    assert type(MLPlatformHook("dry_run:aml_real").platform).__name__ == "DryRunAzureMLPlatform"
    assert type(MLPlatformHook("aml_real").platform).__name__ == "AzureMLPlatform"
    with pytest.raises(PlatformError, match="local runtime, which a dry run is not for"):
        _ = MLPlatformHook("dry_run:local").platform
