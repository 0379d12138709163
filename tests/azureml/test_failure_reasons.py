"""A deployment that does not come up on Azure ML fails its task saying why: the service's
provisioning error and the tail of the container log, through the operator, the real SDK and the
fake workspace's transport."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowException

from deployflow.operators.deployment import CreateDeploymentOperator
from deployflow.platform import EndpointSpec


class _TaskInstance:
    def xcom_push(self, key: str, value: object) -> None:
        self.pushed = (key, value)


def test_the_failure_carries_the_provisioning_error_and_the_log_tail(
    monkeypatch, azure_platform, fake_azure, package
) -> None:
    import deployflow.hooks.ml_platform as hooks

    monkeypatch.setenv("AIRFLOW_CONN_AML_FAILING", json.dumps({"conn_type": "azure_ml"}))
    monkeypatch.setattr(hooks, "platform_from_connection", lambda conn, dry_run=False: azure_platform)
    azure_platform.register_model("diabetes", str(package), version="3")
    azure_platform.create_or_update_endpoint(EndpointSpec("ep-test"), timeout_s=30)
    fake_azure.fail_deployments["green"] = {
        "code": "ResourceNotReady",
        "message": "User container has crashed or terminated: liveness probe failed",
    }
    operator = CreateDeploymentOperator(
        task_id="deploy",
        ml_platform_conn_id="aml_failing",
        endpoint_name="ep-test",
        deployment_name="green",
        model="diabetes:3",
        package_path=str(package),
        deferrable=False,
    )

    with pytest.raises(AirflowException) as failed:
        operator.execute({"ti": _TaskInstance()})

    message = str(failed.value)
    assert message.startswith("deployment ep-test/green is Failed:")
    assert "Azure ML could not create deployment ep-test/green: User container has crashed or terminated" in message
    assert "ModuleNotFoundError: No module named 'sklearn'" in message
    # the new deployment that never came up was deleted again
    assert fake_azure.requests_to("DELETE", r"/onlineEndpoints/ep-test/deployments/green$")
