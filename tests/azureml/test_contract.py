"""The backend through the real SDK against a fake workspace that checks every request body
against Azure ML's REST specification (see transport.py): what Azure would receive and answer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from deployflow.azureml import attach_shared_aks
from deployflow.azureml.aks import instance_type_manifest
from deployflow.azureml.batch import ENTRY_SCRIPT, ENTRY_SOURCE, FAILURES_TAG
from deployflow.azureml.conda import PARALLEL_RUNTIME
from deployflow.platform import (
    DeploymentSpec,
    EndpointSpec,
    ModelRef,
    PlatformError,
    Resources,
)
from deployflow.platform.batch import BatchInput, BatchJobSpec
from tests.azureml.transport import TOKEN, WORKSPACE_ID, FakeAzureML

AKS_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-aks"
    "/providers/Microsoft.ContainerService/managedClusters/aks-prod"
)
SMALL = Resources(cpu=0.25, memory_gb=0.5)


def put_bodies(fake: FakeAzureML, pattern: str) -> list[dict]:
    return [s.body for s in fake.requests_to("PUT", pattern)]


def assert_all_accepted(fake: FakeAzureML) -> None:
    assert fake.refused == [], fake.refused
    assert fake.unhandled == [], [(s.method, s.path) for s in fake.unhandled]


@pytest.fixture
def registered(azure_platform, fake_azure, package: Path) -> ModelRef:
    return azure_platform.register_model("diabetes", str(package), version="3")


@pytest.fixture
def aks(azure_platform, fake_azure) -> str:
    """The shared AKS cluster attached as aks-prod, with the InstanceType the profile renders."""
    attach_shared_aks([azure_platform], compute_name="aks-prod", resource_id=AKS_ID, namespace="ml", timeout_s=30)
    fake_azure.define_instance_types("aks-prod", [instance_type_manifest(SMALL)])
    return "aks-prod"


def deployment(package: Path, endpoint: str, name: str = "blue", **overrides) -> DeploymentSpec:
    values = {"endpoint": endpoint, "name": name, "model": ModelRef("diabetes", "3"), "package_path": str(package)}
    return DeploymentSpec(**{**values, **overrides})


def test_model_registration_uploads_the_folder_and_puts_a_valid_version(azure_platform, fake_azure, package) -> None:
    ref = azure_platform.register_model("diabetes", str(package), version="3", description="ridge")

    assert ref == ModelRef("diabetes", "3")
    (body,) = put_bodies(fake_azure, r"/models/diabetes/versions/3$")
    assert body["properties"]["modelType"] == "custom_model"
    assert body["properties"]["description"] == "ridge"
    uploaded = [name for name in fake_azure.state.blobs if name.endswith("model/model.joblib")]
    assert uploaded and fake_azure.state.blobs[uploaded[0]] == b"not really a model"
    assert_all_accepted(fake_azure)


def test_managed_test_deployment_end_to_end(azure_platform, fake_azure, registered, package) -> None:
    endpoint = azure_platform.create_or_update_endpoint(EndpointSpec("ep-test", tags={"stage": "test"}), timeout_s=30)
    started = azure_platform.begin_create_or_update_deployment(
        deployment(package, "ep-test", instance_count=2, resources=Resources(instance_type="Standard_DS3_v2"))
    )
    done = azure_platform.wait_for_deployment("ep-test", "blue", timeout_s=30, poll_s=0.01)
    traffic = azure_platform.set_traffic("ep-test", traffic={"blue": 100}, timeout_s=30)
    keys = azure_platform.get_keys("ep-test")
    logs = azure_platform.get_deployment_logs("ep-test", "blue", lines=2)

    assert endpoint.provisioning_state == "Succeeded" and endpoint.scoring_uri.endswith("/score")
    assert started.provisioning_state == "Creating"
    assert (done.provisioning_state, done.model, done.instance_count) == ("Succeeded", "diabetes:3", 2)
    assert traffic.traffic == {"blue": 100}
    assert keys.primary_key.startswith("pk-")
    assert len(logs.splitlines()) == 2
    (endpoint_put, traffic_put) = put_bodies(fake_azure, r"/onlineEndpoints/ep-test$")
    assert endpoint_put["properties"]["authMode"] == "Key" and endpoint_put["tags"] == {"stage": "test"}
    assert traffic_put["properties"]["traffic"] == {"blue": 100}
    (deployment_put,) = put_bodies(fake_azure, r"/deployments/blue$")
    props = deployment_put["properties"]
    assert (props["endpointComputeType"], props["instanceType"]) == ("Managed", "Standard_DS3_v2")
    assert deployment_put["sku"]["capacity"] == 2
    assert props["codeConfiguration"]["scoringScript"] == "score.py"
    # the pollers really polled the operation status until it ended
    assert len(fake_azure.requests_to("GET", r"/mfeOperationsStatus/")) >= 2 * fake_azure.polls
    assert_all_accepted(fake_azure)


def test_kubernetes_endpoint_and_deployment_ask_for_the_rendered_instance_type(
    azure_platform, fake_azure, registered, aks, package
) -> None:
    azure_platform.create_or_update_endpoint(EndpointSpec("ep-prod", compute=aks, auth_mode="aml_token"), timeout_s=30)
    # the default profile candidates name an Azure VM size next to the cpu/memory they measure
    spec = deployment(package, "ep-prod", resources=Resources(cpu=0.25, memory_gb=0.5, instance_type="Standard_F2s_v2"))
    started = azure_platform.begin_create_or_update_deployment(spec)
    fake_azure.settle()
    state = azure_platform.get_deployment("ep-prod", "blue")

    (endpoint_put,) = put_bodies(fake_azure, r"/onlineEndpoints/ep-prod$")
    assert endpoint_put["properties"]["compute"].endswith("/computes/aks-prod")
    assert endpoint_put["properties"]["authMode"] == "AMLToken"
    (body,) = put_bodies(fake_azure, r"/deployments/blue$")
    props = body["properties"]
    assert props["endpointComputeType"] == "Kubernetes"
    assert props["instanceType"] == "cpu250m-mem512mi" == started.resources.instance_type
    assert props["scaleSettings"] == {"scaleType": "Default"}
    assert props["containerResourceRequirements"]["containerResourceRequests"] == {"cpu": "250m", "memory": "512Mi"}
    assert state.provisioning_state == "Succeeded"
    assert (state.resources.cpu, state.resources.memory_gb) == (0.25, 0.5)
    assert azure_platform.get_keys("ep-prod").primary_key.startswith("aml-token-")
    assert_all_accepted(fake_azure)


def test_deleting_deployments(azure_platform, fake_azure, registered, package) -> None:
    azure_platform.create_or_update_endpoint(EndpointSpec("ep-test"), timeout_s=30)
    for name in ("blue", "green"):
        azure_platform.begin_create_or_update_deployment(deployment(package, "ep-test", name))
    fake_azure.settle()
    azure_platform.set_traffic("ep-test", traffic={"blue": 100}, timeout_s=30)

    with pytest.raises(PlatformError, match="still receives traffic"):
        azure_platform.delete_deployment("ep-test", "blue")
    assert azure_platform.delete_deployment("ep-test", "green", timeout_s=30) is True
    assert azure_platform.delete_deployment("ep-test", "green") is False

    assert [d.name for d in azure_platform.list_deployments("ep-test")] == ["blue"]
    # the delete was answered 202 + Location, and the poller followed it to the end
    assert fake_azure.requests_to("DELETE", r"/deployments/green$")[0].status == 202
    assert fake_azure.requests_to("GET", r"/mfeOperationResults/")
    assert_all_accepted(fake_azure)


def test_an_instance_type_the_cluster_lacks_is_refused_before_anything_is_created(
    azure_platform, fake_azure, registered, aks, package
) -> None:
    azure_platform.create_or_update_endpoint(EndpointSpec("ep-prod", compute=aks), timeout_s=30)
    spec = deployment(package, "ep-prod", resources=Resources(cpu=2, memory_gb=4))

    with pytest.raises(PlatformError, match=r"instance type cpu2-mem4gi, which it does not define \(it has cpu250m"):
        azure_platform.begin_create_or_update_deployment(spec)
    assert put_bodies(fake_azure, r"/deployments/") == []


def test_a_failed_deployment_says_why(azure_platform, fake_azure, registered, package) -> None:
    azure_platform.create_or_update_endpoint(EndpointSpec("ep-test"), timeout_s=30)
    fake_azure.fail_deployments["blue"] = {
        "code": "ResourceNotReady",
        "message": "User container has crashed or terminated: liveness probe failed",
    }
    azure_platform.begin_create_or_update_deployment(deployment(package, "ep-test"))

    state = azure_platform.wait_for_deployment("ep-test", "blue", timeout_s=30, poll_s=0.01)

    assert state.provisioning_state == "Failed" and state.failed
    assert "User container has crashed or terminated" in state.error
    assert "ModuleNotFoundError: No module named 'sklearn'" in state.error
    log_request = fake_azure.requests_to("POST", r"/deployments/blue/getLogs$")[-1]
    assert log_request.body == {"tail": 20}


def test_mirroring_on_a_kubernetes_endpoint_is_refused_before_any_call(
    azure_platform, fake_azure, registered, aks, package
) -> None:
    azure_platform.create_or_update_endpoint(EndpointSpec("ep-prod", compute=aks), timeout_s=30)
    puts = len(fake_azure.requests_to("PUT", r"/onlineEndpoints/"))

    with pytest.raises(PlatformError, match="does not mirror traffic"):
        azure_platform.set_traffic("ep-prod", mirror_traffic={"green": 10})
    assert len(fake_azure.requests_to("PUT", r"/onlineEndpoints/")) == puts


@pytest.mark.parametrize("name", ["b", "ab", "blue-", "1blue", "blue_green", "x" * 33])
def test_deployment_names_follow_the_service_rule(name: str) -> None:
    with pytest.raises(ValueError, match="3-32 letters"):
        DeploymentSpec(endpoint="ep-1", name=name, model=ModelRef("m", "1"))


def test_the_fake_service_refuses_a_deployment_name_too_short(fake_azure) -> None:
    fake_azure.put_resource("onlineEndpoints/ep-test", {"location": "westeurope", "properties": {"authMode": "Key"}})
    with pytest.raises(PlatformError, match="does not match"):
        _put_raw(fake_azure, "onlineEndpoints/ep-test/deployments/b")


def _put_raw(fake: FakeAzureML, relative: str) -> None:
    from azure.core.rest import HttpRequest

    request = HttpRequest(
        "PUT",
        f"https://management.azure.com{WORKSPACE_ID}/{relative}?api-version=2025-12-01",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        content=json.dumps({"location": "westeurope", "properties": {"endpointComputeType": "Managed"}}),
    )
    response = fake.send(request)
    if response.status_code >= 400:
        raise PlatformError(response.json()["error"]["message"])


def test_reading_back_quoted_quantities_and_a_deployment_sized_by_instance_type(azure_platform, fake_azure) -> None:
    fake_azure.put_resource(
        "onlineEndpoints/ep-prod",
        {"location": "westeurope", "properties": {"authMode": "Key", "compute": f"{WORKSPACE_ID}/computes/aks-prod"}},
    )
    common = {"endpointComputeType": "Kubernetes", "model": f"{WORKSPACE_ID}/models/diabetes/versions/3"}
    fake_azure.put_resource(
        "onlineEndpoints/ep-prod/deployments/quoted",
        {
            "location": "westeurope",
            "sku": {"name": "Default", "capacity": 1},
            "properties": {
                **common,
                "instanceType": "cpu500m-mem1gi",
                "scaleSettings": {"scaleType": "Default"},
                "containerResourceRequirements": {
                    "containerResourceRequests": {"cpu": '"500m"', "memory": '"1Gi"'},
                    "containerResourceLimits": {"cpu": '"500m"', "memory": '"1Gi"', "gpu": '"1"'},
                },
            },
        },
    )
    fake_azure.put_resource(
        "onlineEndpoints/ep-prod/deployments/bytype",
        {
            "location": "westeurope",
            "sku": {"name": "Default", "capacity": 1},
            "properties": {**common, "instanceType": "cpu250m-mem512mi", "scaleSettings": {"scaleType": "Default"}},
        },
    )

    quoted = azure_platform.get_deployment("ep-prod", "quoted")
    by_type = azure_platform.get_deployment("ep-prod", "bytype")

    assert (quoted.resources.cpu, quoted.resources.memory_gb, quoted.resources.gpu) == (0.5, 1.0, 1)
    assert by_type.resources == Resources(instance_type="cpu250m-mem512mi")


def test_batch_cluster_and_parallel_job(azure_platform, fake_azure, registered, package) -> None:
    (package / "batch_score.py").write_text("def init():\n    pass\n\n\ndef run(mini_batch):\n    return mini_batch\n")
    created = azure_platform.ensure_batch_cluster("cpu-cluster", size="Standard_DS3_v2", max_instances=4, timeout_s=30)
    spec = BatchJobSpec(
        name="nightly-scoring",
        model=ModelRef("diabetes", "3"),
        package_path=str(package),
        scoring_script="batch_score.py",
        input=BatchInput(uri="wasbs://incoming@acct.blob.core.windows.net/diabetes/2026-11-01"),
        output_uri="azureml://datastores/workspaceblobstore/paths/scores/diabetes/2026-11-01",
        compute="cpu-cluster",
    )
    state = azure_platform.submit_batch_job(spec)
    cancelled = azure_platform.cancel_batch_job(state.job_id)

    assert created is True
    (cluster,) = put_bodies(fake_azure, r"/computes/cpu-cluster$")
    assert cluster["properties"]["computeType"] == "AmlCompute"
    assert cluster["properties"]["properties"]["scaleSettings"]["maxNodeCount"] == 4
    (job,) = put_bodies(fake_azure, r"/jobs/[^/]+$")
    assert job["properties"]["jobType"] == "Pipeline"
    assert list(job["properties"]["jobs"]) == ["score"]
    environments = put_bodies(fake_azure, r"/environments/[^/]+/versions/[^/]+$")
    conda = yaml.safe_load(environments[-1]["properties"]["condaFile"])
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert set(PARALLEL_RUNTIME) <= set(pip)
    assert state.status == "NotStarted"
    assert cancelled.status in ("CancelRequested", "Canceled")
    assert_all_accepted(fake_azure)


def test_a_deployment_uploads_the_model_once_and_its_code_without_it(
    azure_platform, fake_azure, registered, package
) -> None:
    azure_platform.create_or_update_endpoint(EndpointSpec("ep-test"), timeout_s=30)
    azure_platform.begin_create_or_update_deployment(deployment(package, "ep-test"))

    weights = [name for name in fake_azure.state.blobs if name.endswith("model.joblib")]
    assert len(weights) == 1, f"the model's files went up more than once: {weights}"
    code = sorted(name.split("/diabetes/", 1)[1] for name in fake_azure.state.blobs if "/diabetes/" in name)
    assert code == ["requirements.txt", "score.py"]
    assert_all_accepted(fake_azure)


OUTPUT_URI = "azureml://datastores/workspaceblobstore/paths/scores/diabetes/2026-11-01"


def batch_job(package: Path, **overrides) -> BatchJobSpec:
    (package / "batch_score.py").write_text("def init():\n    pass\n\n\ndef run(mini_batch):\n    return mini_batch\n")
    values = {
        "name": "nightly-scoring", "model": ModelRef("diabetes", "3"), "package_path": str(package),
        "scoring_script": "batch_score.py", "compute": "cpu-cluster", "output_uri": OUTPUT_URI,
        "input": BatchInput(uri="wasbs://incoming@acct.blob.core.windows.net/diabetes/2026-11-01"),
    }  # fmt: skip
    return BatchJobSpec(**{**values, **overrides})


def complete_with_reports(
    fake: FakeAzureML, job_id: str, reports: dict[str, str], skipped: dict[str, str] | None = None
) -> None:
    """What the cluster leaves behind: the entry script's reports under the job's failures folder, then Completed."""
    job = fake.resource(f"jobs/{job_id}")
    failures = job["properties"]["tags"][FAILURES_TAG]
    prefix = failures.split("/paths/", 1)[1]
    for name, error in reports.items():
        report = {"file": name, "error": error, "traceback": "Traceback ..."}
        fake.state.blobs[f"{fake.blob_container}/{prefix}/{name}.error.json"] = json.dumps(report).encode()
    for name, reason in (skipped or {}).items():
        report = {"file": name, "reason": reason}
        fake.state.blobs[f"{fake.blob_container}/{prefix}/{name}.skipped.json"] = json.dumps(report).encode()
    job["properties"]["status"] = "Completed"


def test_a_completed_parallel_job_reports_the_files_its_entry_script_recorded(
    azure_platform, fake_azure, registered, package
) -> None:
    state = azure_platform.submit_batch_job(batch_job(package, error_threshold=5))
    reports = {"2026-11-01/bad.csv": "ValueError: bad.csv row 3 holds a value that is not a number",
               "empty-ish.csv": "ValueError: empty-ish.csv row 0 has 2 values; expected 10"}  # fmt: skip
    complete_with_reports(fake_azure, state.job_id, reports, skipped={"zero.csv": "empty file (0 bytes)"})

    done = azure_platform.get_batch_job(state.job_id)

    assert (done.status, done.retryable) == ("Completed", True)
    assert done.failed_files == ("2026-11-01/bad.csv", "empty-ish.csv")
    assert done.file_errors == reports and done.summary == {"failed": 2, "skipped": 1}
    assert done.skipped_files == {"zero.csv": "empty file (0 bytes)"}
    (job,) = put_bodies(fake_azure, r"/jobs/[^/]+$")
    step = job["properties"]["jobs"]["score"]
    assert step["task"]["entry_script"] == ENTRY_SCRIPT
    assert step["outputs"]["failed_files"]["uri"].startswith(f"{OUTPUT_URI}/_failed_files/")
    entry = [name for name in fake_azure.state.blobs if name.endswith(f"/{ENTRY_SCRIPT}")]
    assert len(entry) == 1 and fake_azure.state.blobs[entry[0]] == ENTRY_SOURCE.read_bytes()
    assert not [name for name in fake_azure.state.blobs if name.endswith("model.joblib") and "/diabetes/" in name]
    assert_all_accepted(fake_azure)


def test_more_recorded_files_than_the_error_threshold_fail_the_job_for_good(
    azure_platform, fake_azure, registered, package
) -> None:
    state = azure_platform.submit_batch_job(batch_job(package, error_threshold=1))
    complete_with_reports(fake_azure, state.job_id, {"a.csv": "ValueError: a", "b.csv": "ValueError: b"})

    done = azure_platform.get_batch_job(state.job_id)

    assert (done.status, done.retryable) == ("Failed", False)
    assert "2 file(s) failed on their data, more than error_threshold=1; first: a.csv: ValueError: a" in done.error
    assert done.failed_files == ("a.csv", "b.csv")


def test_a_completed_job_with_no_reports_has_no_failed_files(azure_platform, fake_azure, registered, package) -> None:
    state = azure_platform.submit_batch_job(batch_job(package, error_threshold=0))
    complete_with_reports(fake_azure, state.job_id, {})

    done = azure_platform.get_batch_job(state.job_id)

    assert (done.status, done.failed_files, done.file_errors) == ("Completed", (), {})
    assert done.summary == {"failed": 0, "skipped": 0}
    assert_all_accepted(fake_azure)


def test_an_aml_token_is_kept_until_its_refresh_time_then_asked_for_again(azure_platform, fake_azure, aks) -> None:
    azure_platform.create_or_update_endpoint(EndpointSpec("ep-prod", compute=aks, auth_mode="aml_token"), timeout_s=30)

    first, until = azure_platform.scoring_headers_until("ep-prod")
    again, _ = azure_platform.scoring_headers_until("ep-prod")

    assert first == again and first["Authorization"].startswith("Bearer aml-token-")
    assert len(fake_azure.requests_to("POST", r"/onlineEndpoints/ep-prod/token$")) == 1, "a fresh token is reused"
    assert until is not None and time.time() < until <= time.time() + fake_azure.token_lifetime_s / 2 + 1

    fake_azure.token_lifetime_s = 0  # the next token is due for refresh as soon as it is given
    azure_platform._tokens.clear()
    due, until_due = azure_platform.scoring_headers_until("ep-prod")
    fresh, _ = azure_platform.scoring_headers_until("ep-prod")

    assert due != fresh, "a token past its refresh time is replaced before it is used again"
    assert until_due is not None and until_due <= time.time()
    assert len(fake_azure.requests_to("POST", r"/onlineEndpoints/ep-prod/token$")) == 3
    assert_all_accepted(fake_azure)


def test_key_endpoints_are_read_every_time_so_a_regenerated_key_is_used_at_once(azure_platform, fake_azure) -> None:
    azure_platform.create_or_update_endpoint(EndpointSpec("ep-test"), timeout_s=30)

    headers, until = azure_platform.scoring_headers_until("ep-test")
    azure_platform.scoring_headers_until("ep-test")

    assert until is None and headers["Authorization"].startswith("Bearer pk-")
    assert len(fake_azure.requests_to("POST", r"/onlineEndpoints/ep-test/listKeys$")) == 2
