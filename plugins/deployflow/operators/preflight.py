"""The first task of a run: is the platform ready for what the run will ask of it?"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from deployflow.defaults import PROFILING_DEFAULTS_FILE
from deployflow.operators.base import MLPlatformOperator, rendered_json
from deployflow.platform.errors import PlatformError
from deployflow.platform.specs import Resources


class PreflightOperator(MLPlatformOperator):
    """Check, before anything is created, that the platform has what the run needs.

    On Azure ML (``deployflow.azureml.preflight``): a token, the workspace, the computes, the
    instance types each Kubernetes compute must define, and quota or capacity for each new
    deployment next to the endpoint's current ones. On the local runtime: that it answers.

    ``endpoints`` lists the endpoints the run deploys to: ``{"name", "compute" (empty: managed),
    "resources": [shape, ...], "candidates": [profile candidate, ...] or None (the default
    candidates), "instance_count"}``. ``computes`` lists the AmlCompute clusters batch jobs go
    to: ``{"name", "instance_count"}``. Each thing to fix is named in one failure; the report
    (passed, problems, unchecked) is returned.
    """

    template_fields: Sequence[str] = (*MLPlatformOperator.template_fields, "endpoints", "computes")
    template_fields_renderers = {"endpoints": "json", "computes": "json"}
    ui_color = "#e8e8f8"

    def __init__(
        self,
        *,
        endpoints: list[dict[str, Any]] | str | None = None,
        computes: list[dict[str, Any]] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoints = endpoints
        self.computes = computes

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            platform = self.platform
        except PlatformError as e:
            raise AirflowFailException(f"preflight: {e}") from e
        if platform.kind == "local":
            return self._local(platform)
        from deployflow.azureml.preflight import preflight

        try:
            endpoints, clusters = self._planned()
        except (ValueError, TypeError) as e:
            raise AirflowFailException(f"preflight: {e}") from e
        report = preflight(platform, endpoints=endpoints, clusters=clusters)
        for line in report.passed:
            self.log.info("preflight passed: %s", line)
        for line in report.unchecked:
            self.log.warning("preflight could not check: %s", line)
        if report.problems:
            listed = "\n  - ".join(report.problems)
            raise AirflowFailException(
                f"preflight found {len(report.problems)} thing(s) to fix before the run creates anything:\n  - {listed}"
            )
        return report.to_dict()

    def _local(self, platform: Any) -> dict[str, Any]:
        if not platform.client.health():
            raise AirflowFailException(
                f"preflight: the local runtime at {platform.client.control_url} does not answer its health route; "
                "start it (`./dev up`, or python -m deployflow.runtime)"
            )
        self.log.info("local runtime: nothing to check")
        return {"ok": True, "passed": ["the local runtime answers"], "problems": [], "unchecked": []}

    def _planned(self) -> tuple[list[Any], list[Any]]:
        from deployflow.azureml.preflight import PlannedCluster, PlannedEndpoint

        endpoints = []
        for item in rendered_json(self.endpoints, []):
            shapes = [Resources.from_dict(dict(r)) for r in item.get("resources") or [] if r]
            if "candidates" in item:
                candidates = item["candidates"] or json.loads(PROFILING_DEFAULTS_FILE.read_text())["candidates"]
                shapes += [Resources.from_dict(dict(c["resources"])) for c in candidates]
            endpoints.append(
                PlannedEndpoint(
                    name=str(item["name"]),
                    compute=item.get("compute") or None,
                    resources=tuple(shapes),
                    instance_count=int(item.get("instance_count") or 1),
                )
            )
        clusters = []
        for item in rendered_json(self.computes, []):
            if not item.get("name"):
                raise ValueError(
                    "a batch job on Azure ML needs a compute cluster: set compute in the use case's config"
                )
            clusters.append(PlannedCluster(name=str(item["name"]), instance_count=int(item.get("instance_count") or 1)))
        return endpoints, clusters
