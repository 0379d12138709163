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
                    "subscription_id": {
                        "label": "Subscription ID",
                        "description": "The Azure subscription that holds the workspace (a GUID).",
                        "schema": NULLABLE_STRING,
                    },
                    "resource_group": {
                        "label": "Resource group",
                        "description": "The resource group of the Azure Machine Learning workspace.",
                        "schema": NULLABLE_STRING,
                    },
                    "workspace_name": {
                        "label": "Workspace",
                        "description": "The Azure Machine Learning workspace's name (not its id).",
                        "schema": NULLABLE_STRING,
                    },
                    "tenant_id": {
                        "label": "Tenant ID (service principal only)",
                        "description": (
                            "The Entra ID tenant of the service principal; needed with a client id and secret, "
                            "ignored without them."
                        ),
                        "schema": NULLABLE_STRING,
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "host", "extra"],
                    "relabeling": {
                        "login": "Client ID (service principal; empty: DefaultAzureCredential)",
                        "password": "Client secret (service principal; empty: DefaultAzureCredential)",
                    },
                    "placeholders": {
                        "login": "00000000-0000-0000-0000-000000000000",
                        "password": "the service principal's secret",
                        "subscription_id": "00000000-0000-0000-0000-000000000000",
                        "resource_group": "rg-ml-prod",
                        "workspace_name": "mlw-prod",
                        "tenant_id": "00000000-0000-0000-0000-000000000000",
                    },
                },
            },
            {
                "connection-type": "deployflow_local",
                "hook-class-name": "deployflow.hooks.ml_platform.LocalRuntimeHook",
                "hook-name": "deployflow local runtime",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "extra"],
                    "relabeling": {
                        "host": "Runtime host (its control plane; loopback by default)",
                        "port": "Control port (default 7070)",
                        "password": "Admin token (the runtime's <data-dir>/admin-token)",
                    },
                    "placeholders": {
                        "host": "127.0.0.1",
                        "port": "7070",
                        "password": "contents of .deployflow/runtime/admin-token",
                    },
                },
            },
        ],
    }
