"""What Airflow's providers manager reads to show deployflow's connection types in the UI.

Declared here (not in the hooks) so the UI learns the form fields without importing them.
"""

from __future__ import annotations

from typing import Any

NULLABLE_STRING = {"type": ["string", "null"]}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "deployflow",
        "name": "deployflow",
        "description": "Azure ML model deployment flows, with a local runtime that plays Azure ML's part.",
        "connection-types": [
            {
                "connection-type": "azure_ml",
                "hook-class-name": "deployflow.hooks.ml_platform.AzureMLHook",
                "hook-name": "Azure Machine Learning (deployflow)",
                "conn-fields": {
                    "subscription_id": {"label": "Subscription ID", "schema": NULLABLE_STRING},
                    "resource_group": {"label": "Resource group", "schema": NULLABLE_STRING},
                    "workspace_name": {"label": "Workspace", "schema": NULLABLE_STRING},
                    "tenant_id": {"label": "Tenant ID (service principal only)", "schema": NULLABLE_STRING},
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "host", "extra"],
                    "relabeling": {"login": "Client ID", "password": "Client secret"},
                    "placeholders": {
                        "login": "service principal client id; empty: DefaultAzureCredential",
                        "password": "service principal secret; empty: DefaultAzureCredential",
                    },
                },
            },
            {
                "connection-type": "deployflow_local",
                "hook-class-name": "deployflow.hooks.ml_platform.LocalRuntimeHook",
                "hook-name": "deployflow local runtime",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "extra"],
                    "relabeling": {"password": "Admin token"},
                    "placeholders": {
                        "host": "127.0.0.1",
                        "port": "7070",
                        "password": ".deployflow/runtime/admin-token",
                    },
                },
            },
        ],
    }
