"""Operators for online endpoints: create or update one, delete one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from deployflow.operators.base import MLPlatformOperator
from deployflow.platform.specs import EndpointSpec


class CreateOrUpdateEndpointOperator(MLPlatformOperator):
    """Create the endpoint if it is missing; traffic and keys of an existing one are left alone.

    ``compute`` names the pool: an attached AKS compute (a Kubernetes endpoint) on Azure ML,
    a local pool on the runtime; None is a managed endpoint (the test deployment target).
    Returns the endpoint's state (name, scoring URI, traffic), never its keys.
    """

    template_fields: Sequence[str] = (
        *MLPlatformOperator.template_fields,
        "endpoint_name",
        "compute",
        "description",
        "tags",
    )
    template_fields_renderers = {"tags": "json"}

    def __init__(
        self,
        *,
        endpoint_name: str,
        compute: str | None = None,
        auth_mode: str = "key",
        description: str = "",
        tags: dict[str, str] | None = None,
        timeout_s: float = 900,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.compute = compute
        self.auth_mode = auth_mode
        self.description = description
        self.tags = tags or {}
        self.timeout_s = timeout_s

    def execute(self, context: Context) -> dict[str, Any]:
        spec = EndpointSpec(
            name=self.endpoint_name,
            compute=self.compute or None,
            auth_mode=self.auth_mode,
            description=self.description,
            tags=dict(self.tags),
        )
        state = self.platform.create_or_update_endpoint(spec, timeout_s=self.timeout_s)
        self.log.info("endpoint %s is %s at %s", state.name, state.provisioning_state, state.scoring_uri)
        return state.to_dict()


class DeleteEndpointOperator(MLPlatformOperator):
    """Delete an endpoint and every deployment behind it; a missing endpoint is not an error.

    Used as the teardown of test endpoints, so it also runs when the run failed.
    """

    template_fields: Sequence[str] = (
        *MLPlatformOperator.template_fields,
        "endpoint_name",
    )

    def __init__(self, *, endpoint_name: str, timeout_s: float = 900, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.timeout_s = timeout_s

    def execute(self, context: Context) -> bool:
        deleted = self.platform.delete_endpoint(self.endpoint_name, timeout_s=self.timeout_s)
        self.log.info("endpoint %s %s", self.endpoint_name, "deleted" if deleted else "was already gone")
        return deleted
