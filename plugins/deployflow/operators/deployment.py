"""Operators for deployments: create one and wait for it (in the triggerer), smoke-test it, delete it."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from airflow.sdk import Context, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from deployflow.checks import Check, Sample, Severity, parse_severities
from deployflow.compare import DEFAULT_ABS_TOL, DEFAULT_REL_TOL
from deployflow.operators.base import MLPlatformOperator, refused_requests_fail_the_task, rendered_json
from deployflow.packages import ModelPackage, ModelPackageError
from deployflow.platform.base import NOT_JUDGED
from deployflow.platform.cleanup import remove_quietly
from deployflow.platform.errors import PlatformError, PlatformNotFoundError
from deployflow.platform.specs import (
    DeploymentSpec,
    DeploymentState,
    ModelRef,
    ProbeSettings,
    RequestSettings,
    Resources,
)
from deployflow.smoke import smoke_test_deployment
from deployflow.triggers.ml_platform import DeploymentStateTrigger

LOG_TAIL_LINES = 40


def _log_tail(operator: MLPlatformOperator, endpoint: str, deployment: str) -> str:
    """The deployment's last log lines for an error message; best effort."""
    try:
        return operator.platform.get_deployment_logs(endpoint, deployment, lines=LOG_TAIL_LINES)
    except PlatformError as e:
        return f"(logs unavailable: {e})"


class CreateDeploymentOperator(MLPlatformOperator):
    """Create (or update) a deployment with no traffic and wait until it is ready.

    The wait runs in the triggerer when ``deferrable`` (no worker slot is held). A new
    deployment that fails to provision is deleted again, after its log tail is put into
    the error, so a failed run leaves no orphan behind. Returns the deployment's state.
    """

    template_fields: Sequence[str] = (
        *MLPlatformOperator.template_fields,
        "endpoint_name",
        "deployment_name",
        "model",
        "package_path",
        "instance_resources",
        "instance_count",
        "worker_count",
        "request_settings",
        "environment_variables",
    )
    template_fields_renderers = {
        "instance_resources": "json",
        "request_settings": "json",
        "environment_variables": "json",
    }
    ui_color = "#d9f2e6"

    def __init__(
        self,
        *,
        endpoint_name: str,
        deployment_name: str,
        model: str,
        package_path: str | None = None,
        instance_resources: dict[str, Any] | None = None,
        instance_count: int | str = 1,
        worker_count: int | str = 1,
        request_settings: dict[str, Any] | None = None,
        liveness_probe: dict[str, Any] | None = None,
        readiness_probe: dict[str, Any] | None = None,
        environment_variables: dict[str, str] | None = None,
        timeout_s: float = 1800,
        poll_interval: float = 5.0,
        delete_on_failure: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.deployment_name = deployment_name
        self.model = model
        self.package_path = package_path
        self.instance_resources = instance_resources or {}
        self.instance_count = instance_count
        self.worker_count = worker_count
        self.request_settings = request_settings or {}
        self.liveness_probe = liveness_probe or {}
        self.readiness_probe = readiness_probe or {}
        self.environment_variables = environment_variables or {}
        self.timeout_s = timeout_s
        self.poll_interval = poll_interval
        self.delete_on_failure = delete_on_failure
        self.deferrable = deferrable
        self._created: bool = False

    def spec(self) -> DeploymentSpec:
        """The typed spec from the rendered fields (templated numbers arrive as strings)."""
        resources = rendered_json(self.instance_resources, {})
        return DeploymentSpec(
            endpoint=self.endpoint_name,
            name=self.deployment_name,
            model=ModelRef.parse(self.model),
            package_path=self.package_path or None,
            resources=Resources.from_dict(resources),
            instance_count=int(self.instance_count),
            worker_count=int(self.worker_count),
            request_settings=RequestSettings.from_dict(self.request_settings),
            liveness_probe=ProbeSettings.from_dict(self.liveness_probe),
            readiness_probe=ProbeSettings.from_dict(self.readiness_probe),
            environment_variables=dict(self.environment_variables),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        with refused_requests_fail_the_task():
            return self._execute(context)

    def _execute(self, context: Context) -> dict[str, Any]:
        spec = self.spec()
        existing = {d.name for d in self.platform.list_deployments(spec.endpoint)}
        self._created = spec.name not in existing
        self.log.info(
            "%s deployment %s/%s: model %s, %d instance(s) of %s",
            "creating" if self._created else "updating",
            spec.endpoint,
            spec.name,
            spec.model,
            spec.instance_count,
            spec.resources.describe(),
        )
        self.platform.begin_create_or_update_deployment(spec)
        # What the task started, for execute_complete and for whoever cleans up after a failed run.
        started = {"endpoint_name": spec.endpoint, "deployment_name": spec.name, "created": self._created}
        context["ti"].xcom_push(key="deployment", value=started)
        if self.deferrable:
            self.defer(
                trigger=DeploymentStateTrigger(
                    ml_platform_conn_id=self.ml_platform_conn_id,
                    endpoint_name=spec.endpoint,
                    deployment_name=spec.name,
                    deadline=time.time() + self.timeout_s,
                    poll_interval=self.poll_interval,
                    delete_on_kill=self._created,
                ),
                method_name="execute_complete",
            )
        try:
            state = self.platform.wait_for_deployment(spec.endpoint, spec.name, timeout_s=self.timeout_s)
        except PlatformError as e:
            self._fail(str(e), created=self._created)
        if state.failed:
            self._fail(
                f"deployment {spec.endpoint}/{spec.name} is {state.provisioning_state}: {state.error}", self._created
            )
        return self._ready(state)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event["status"] != "success":
            started = context["ti"].xcom_pull(task_ids=self.task_id, key="deployment") or {}
            self._fail(event["message"], created=bool(started.get("created")))
        return self._ready(DeploymentState.from_dict(event["deployment"]))

    def _ready(self, state: DeploymentState) -> dict[str, Any]:
        self.log.info(
            "deployment %s/%s is %s (resources enforced by %s)",
            state.endpoint,
            state.name,
            state.provisioning_state,
            state.enforcement or "the platform",
        )
        return state.to_dict()

    def _fail(self, message: str, created: bool) -> NoReturn:
        logs = _log_tail(self, self.endpoint_name, self.deployment_name)
        if created and self.delete_on_failure:
            self._delete_quietly()
        raise AirflowException(f"{message}\nlast {LOG_TAIL_LINES} log lines:\n{logs}")

    def _delete_quietly(self) -> None:
        endpoint, name = self.endpoint_name, self.deployment_name
        what = f"delete the failed new deployment {endpoint}/{name}"
        if remove_quietly(lambda: self.platform.delete_deployment(endpoint, name), what, self.log) is not None:
            self.log.info("deleted the failed new deployment %s/%s", endpoint, name)

    def on_kill(self) -> None:
        """A killed task takes its half-created deployment with it; an updated one is left serving."""
        if self._created:
            self._delete_quietly()


class SmokeTestOperator(MLPlatformOperator):
    """Input/output test of one deployment, pinned with the ``azureml-model-deployment`` header.

    Replays every sample of the package (or the one ``request`` / ``expected_response``)
    through the endpoint and judges the answers with the named checks of
    :mod:`deployflow.checks` (``smoke_checks`` sets each one's severity; a malformed request
    answered with a 5xx is a warning by default, as Azure ML accepts it). Every outcome is
    logged and returned. A wrong answer fails the task without retries; only a failure a
    retry can mend (no answer in time, a 502/503/504) is retried.
    """

    template_fields: Sequence[str] = (
        *MLPlatformOperator.template_fields,
        "endpoint_name",
        "deployment_name",
        "package_path",
        "request",
        "expected_response",
        "rel_tol",
        "abs_tol",
        "smoke_checks",
    )
    template_fields_renderers = {"request": "json", "expected_response": "json", "smoke_checks": "json"}
    ui_color = "#fff4d6"

    def __init__(
        self,
        *,
        endpoint_name: str,
        deployment_name: str,
        package_path: str | None = None,
        request: Any = None,
        expected_response: Any = None,
        rel_tol: float | None = None,
        abs_tol: float | None = None,
        smoke_checks: dict[str, str] | str | None = None,
        check_malformed_input: bool = True,
        timeout_s: float = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.deployment_name = deployment_name
        self.package_path = package_path
        self.request = request
        self.expected_response = expected_response
        self.rel_tol = rel_tol
        self.abs_tol = abs_tol
        self.smoke_checks = smoke_checks
        self.check_malformed_input = check_malformed_input
        self.timeout_s = timeout_s

    def _samples(self) -> tuple[list[Sample], tuple[float, float]]:
        tolerance = (DEFAULT_REL_TOL, DEFAULT_ABS_TOL)
        if self.request is not None and self.expected_response is not None:
            body = self.request if isinstance(self.request, bytes) else json.dumps(self.request).encode()
            samples = [Sample("request", body, self.expected_response)]
        elif self.package_path:
            package = ModelPackage.load(self.package_path)
            samples, tolerance = package.samples(), package.tolerance()
        else:
            raise AirflowFailException("give package_path, or both request and expected_response")
        rel = tolerance[0] if self.rel_tol in (None, "") else float(self.rel_tol)
        return samples, (rel, tolerance[1] if self.abs_tol in (None, "") else float(self.abs_tol))

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            samples, (rel_tol, abs_tol) = self._samples()
            severities = parse_severities(rendered_json(self.smoke_checks, {}))
        except (ModelPackageError, ValueError) as e:
            raise AirflowFailException(str(e)) from e
        if not self.check_malformed_input:
            severities[Check.MALFORMED_REQUEST_4XX] = Severity.OFF
        target = f"{self.endpoint_name}/{self.deployment_name}"
        if self.platform.dry_run:
            return self._not_judged(target, samples)
        with refused_requests_fail_the_task():
            report = smoke_test_deployment(
                self.platform, self.endpoint_name, self.deployment_name, samples,
                rel_tol=rel_tol, abs_tol=abs_tol, severities=severities, timeout_s=self.timeout_s,
            )  # fmt: skip
        for line in report.lines(report.warnings):
            self.log.warning("smoke test of %s: %s", target, line)
        if report.failures:
            listed = "\n  ".join(report.lines(report.failures)[:20])
            message = f"smoke test of {target} failed {len(report.failures)} check(s):\n  {listed}"
            if report.retry_may_help:
                raise AirflowException(message + "\n(no answer, or the platform was busy: the task is retried)")
            raise AirflowFailException(message)
        timings = report.answer_ms()
        self.log.info("smoke test of %s passed: %d sample(s), first in %.1f ms", target, len(samples), timings[0])
        return {
            "endpoint_name": self.endpoint_name,
            "deployment_name": self.deployment_name,
            "elapsed_ms": round(timings[0], 2),
            "samples": len(samples),
            "warnings": report.lines(report.warnings),
            "checks": report.to_dict(),
        }

    def _not_judged(self, target: str, samples: list[Sample]) -> dict[str, Any]:
        """A dry run: the samples are recorded, not sent, and the task succeeds with no verdict."""
        with refused_requests_fail_the_task():
            line = self.platform.scoring_not_sent(
                self.endpoint_name, [s.body for s in samples], deployment=self.deployment_name, what="smoke test"
            )
        self.platform.assume(f"smoke test of {target}: {NOT_JUDGED}; {len(samples)} sample(s) taken as answered right")
        self.log.warning("smoke test of %s: %s; %s", target, NOT_JUDGED, line)
        return {
            "endpoint_name": self.endpoint_name,
            "deployment_name": self.deployment_name,
            "verdict": NOT_JUDGED,
            "elapsed_ms": None,
            "samples": len(samples),
            "warnings": [],
            "checks": None,
        }


class DeleteDeploymentOperator(MLPlatformOperator):
    """Delete a deployment; a missing one is not an error.

    A deployment still taking live traffic is refused (move the traffic first), unless it
    is the endpoint's only one and ``drop_traffic`` is set; a mirror share is removed first.
    """

    template_fields: Sequence[str] = (*MLPlatformOperator.template_fields, "endpoint_name", "deployment_name")

    def __init__(
        self,
        *,
        endpoint_name: str,
        deployment_name: str,
        drop_traffic: bool = False,
        timeout_s: float = 900,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.deployment_name = deployment_name
        self.drop_traffic = drop_traffic
        self.timeout_s = timeout_s

    def execute(self, context: Context) -> bool:
        platform, name = self.platform, self.deployment_name
        try:
            endpoint = platform.get_endpoint(self.endpoint_name)
        except PlatformNotFoundError:
            self.log.info("endpoint %s is gone, and deployment %s with it", self.endpoint_name, name)
            return False
        if endpoint.mirror_traffic.get(name):
            self.log.info("endpoint %s: mirror traffic %s -> {}", self.endpoint_name, endpoint.mirror_traffic)
            platform.set_traffic(self.endpoint_name, mirror_traffic={}, timeout_s=self.timeout_s)
        if endpoint.traffic.get(name):
            if not self.drop_traffic or len(endpoint.traffic) > 1:
                raise AirflowFailException(
                    f"deployment {self.endpoint_name}/{name} takes {endpoint.traffic[name]}% of live traffic; "
                    "move it to another deployment first"
                )
            self.log.info("endpoint %s: traffic %s -> {}", self.endpoint_name, endpoint.traffic)
            platform.set_traffic(self.endpoint_name, traffic={}, timeout_s=self.timeout_s)
        deleted = platform.delete_deployment(self.endpoint_name, name, timeout_s=self.timeout_s)
        self.log.info("deployment %s/%s %s", self.endpoint_name, name, "deleted" if deleted else "was already gone")
        return deleted
