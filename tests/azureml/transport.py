"""The fake Azure ML workspace the contract tests talk to: the package's simulated workspace
(``deployflow.azureml.simulated``) with fixed names, a bearer token it insists on, and
deployments a test can make fail.
"""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo

from deployflow.azureml.simulated import (
    ARM_HOST,
    PROVIDER,
    Sent,
    ServiceAnswer,
    SimulatedWorkspace,
    blob_clients_through,
    unsigned_token,
)
from deployflow.azureml.spec import SpecSchema

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg-ml"
WORKSPACE = "ws-prod"
LOCATION = "westeurope"
WORKSPACE_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/{PROVIDER}/workspaces/{WORKSPACE}"
)
token_for = unsigned_token
#: the token ARM requests carry; a request without it is refused 401
TOKEN = unsigned_token("https://management.azure.com/.default")

__all__ = [
    "ARM_HOST",
    "LOCATION",
    "RESOURCE_GROUP",
    "SUBSCRIPTION",
    "TOKEN",
    "WORKSPACE",
    "WORKSPACE_ID",
    "FakeAzureML",
    "FakeCredential",
    "Sent",
    "blob_clients_through",
    "token_for",
]


class FakeCredential:
    """A token credential with a fixed token: the pipeline's bearer policy asks it, nothing else."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(unsigned_token(scopes[0]), int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        self.scopes.append(scopes)
        return AccessTokenInfo(unsigned_token(scopes[0]), int(time.time()) + 3600)


class FakeAzureML(SimulatedWorkspace):
    """Workspace ws-prod of rg-ml. ``fail_deployments`` maps a deployment name to the error its
    provisioning ends with."""

    def __init__(self, *, polls: int = 2, schema: SpecSchema | None = None) -> None:
        super().__init__(
            subscription=SUBSCRIPTION,
            resource_group=RESOURCE_GROUP,
            workspace=WORKSPACE,
            location=LOCATION,
            polls=polls,
            schema=schema,
        )
        self.fail_deployments: dict[str, dict[str, Any]] = {}

    def _authorise(self, request: Any) -> None:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            raise ServiceAnswer(401, "AuthenticationFailed", "the bearer token is missing or not valid")

    def _deployment_error(self, name: str) -> dict[str, Any] | None:
        return self.fail_deployments.get(name)
