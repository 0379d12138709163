"""Attach one shared AKS cluster to several Azure ML workspaces: the guidance's central cluster."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from deployflow.hooks.ml_platform import MLPlatformHook


class AttachSharedAksOperator(BaseOperator):
    """Attach the AKS cluster ``resource_id`` as ``compute_name`` in every workspace named by
    ``ml_platform_conn_ids`` (one ``azure_ml`` connection each).

    Every workspace is checked before any is changed; where the cluster is already attached
    under that name it is skipped. Returns which workspaces were attached and which already were.
    """

    template_fields: Sequence[str] = ("ml_platform_conn_ids", "compute_name", "resource_id", "namespace")
    template_fields_renderers = {"ml_platform_conn_ids": "json"}

    def __init__(
        self,
        *,
        ml_platform_conn_ids: list[str],
        compute_name: str,
        resource_id: str,
        namespace: str = "default",
        timeout_s: float = 900,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ml_platform_conn_ids = ml_platform_conn_ids
        self.compute_name = compute_name
        self.resource_id = resource_id
        self.namespace = namespace
        self.timeout_s = timeout_s

    def execute(self, context: Context) -> dict[str, list[str]]:
        from deployflow.azureml.aks import attach_shared_aks
        from deployflow.azureml.backend import AzureMLPlatform

        platforms = [MLPlatformHook(ml_platform_conn_id=c).platform for c in self.ml_platform_conn_ids]
        not_azure = [c for c, p in zip(self.ml_platform_conn_ids, platforms, strict=True) if p.kind != "azureml"]
        if not_azure:
            raise AirflowFailException(f"attaching AKS needs azure_ml connections; {not_azure} are not")
        report = attach_shared_aks(
            [p for p in platforms if isinstance(p, AzureMLPlatform)],
            compute_name=self.compute_name,
            resource_id=self.resource_id,
            namespace=self.namespace,
            timeout_s=self.timeout_s,
        )
        self.log.info(
            "compute %s: attached in %s; already attached in %s",
            self.compute_name,
            report.attached or "none",
            report.already_attached or "none",
        )
        return {"attached": report.attached, "already_attached": report.already_attached}
