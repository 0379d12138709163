"""The hook that turns an Airflow connection into an ML platform: Azure ML or the local runtime.

Which backend answers is decided by the connection's type, never by the DAG: an ``azure_ml``
connection gives the Azure ML backend, a ``deployflow_local`` connection the local runtime.
The platform is created on first use and never logs a secret.

An ``azure_ml`` connection with the extra ``dry_run: true``, or any ``azure_ml`` connection id
written ``dry_run:<conn id>`` (what a run with the ``dry_run`` param passes its tasks and their
triggers), gives the dry-run backend: requests are built, checked and recorded, none is sent.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.hook import BaseHook

from deployflow.platform.errors import PlatformError, PlatformNotFoundError

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from deployflow.platform.base import MLPlatform

AZURE_ML = "azure_ml"
LOCAL_RUNTIME = "deployflow_local"
DEFAULT_CONN_ID = "deployflow_local"
DEFAULT_LOCAL_PORT = 7070
#: a connection id with this prefix asks for a dry run of the connection it names
DRY_RUN_PREFIX = "dry_run:"


def split_dry_run(conn_id: str) -> tuple[str, bool]:
    """The connection id proper, and whether it asks for a dry run."""
    if conn_id.startswith(DRY_RUN_PREFIX):
        return conn_id[len(DRY_RUN_PREFIX) :], True
    return conn_id, False


def _extra(conn: Connection, name: str) -> str | None:
    """A connection-form field: stored plain in Airflow 3, with the legacy prefix in older exports."""
    extra = conn.extra_dejson
    return extra.get(name) or extra.get(f"extra__{conn.conn_type}__{name}") or None


def platform_from_connection(conn: Connection, *, dry_run: bool = False) -> MLPlatform:
    """Build the backend a connection describes; imports only the SDK that backend needs."""
    if conn.conn_type == LOCAL_RUNTIME:
        if dry_run:
            raise PlatformError(
                f"connection {conn.conn_id} is the local runtime, which a dry run is not for (it sends nothing "
                "to Azure anyway): run without dry_run, or dry-run an azure_ml connection"
            )
        from deployflow.local.backend import LocalPlatform

        if not conn.password:
            raise PlatformError(
                f"connection {conn.conn_id} has no admin token (password); the runtime writes it to "
                "<data-dir>/admin-token"
            )
        url = f"http://{conn.host or '127.0.0.1'}:{conn.port or DEFAULT_LOCAL_PORT}"
        return LocalPlatform(url, conn.password, prometheus_url=_extra(conn, "prometheus_url"))
    if conn.conn_type == AZURE_ML:
        return _azure_ml_platform(conn, dry_run=dry_run or _flag(_extra(conn, "dry_run")))
    raise PlatformError(
        f"connection {conn.conn_id} is of type {conn.conn_type!r}; an ML platform connection is "
        f"{AZURE_ML!r} (Azure Machine Learning) or {LOCAL_RUNTIME!r} (the local runtime)"
    )


def _flag(value: object) -> bool:
    """A boolean extra, as the form stores it (true) or as JSON text ("true")."""
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def _azure_ml_platform(conn: Connection, *, dry_run: bool) -> MLPlatform:
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    from deployflow.azureml.backend import AzureMLPlatform

    workspace = {name: _extra(conn, name) for name in ("subscription_id", "resource_group", "workspace_name")}
    missing = [name for name, value in workspace.items() if not value]
    if missing:
        raise PlatformError(f"connection {conn.conn_id} lacks {', '.join(missing)}: set them in the connection form")
    if dry_run:
        from deployflow.azureml.dry_run import dry_run_folder, dry_run_platform

        return dry_run_platform(dry_run_folder(conn.conn_id, _extra(conn, "dry_run_dir")), **workspace)
    tenant_id = _extra(conn, "tenant_id")
    if conn.login and conn.password:
        if not tenant_id:
            raise PlatformError(f"connection {conn.conn_id} has a client id and secret but no tenant_id")
        credential: Any = ClientSecretCredential(tenant_id, conn.login, conn.password)
    else:
        credential = DefaultAzureCredential()
    platform = AzureMLPlatform.from_workspace(
        workspace["subscription_id"], workspace["resource_group"], workspace["workspace_name"], credential=credential
    )
    platform.prometheus_url = _extra(conn, "prometheus_url")
    return platform


class MLPlatformHook(BaseHook):
    """Gives operators, sensors and triggers the platform behind ``ml_platform_conn_id``."""

    conn_name_attr = "ml_platform_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = LOCAL_RUNTIME
    hook_name = "deployflow ML platform"

    def __init__(self, ml_platform_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ml_platform_conn_id = ml_platform_conn_id

    @cached_property
    def platform(self) -> MLPlatform:
        conn_id, dry_run = split_dry_run(self.ml_platform_conn_id)
        return platform_from_connection(self.get_connection(conn_id), dry_run=dry_run)

    def get_conn(self) -> MLPlatform:
        return self.platform

    def close(self) -> None:
        """Close the platform's HTTP clients if it was opened; the next use opens a new one."""
        platform = self.__dict__.pop("platform", None)
        if platform is not None:
            platform.close()

    def test_connection(self) -> tuple[bool, str]:
        """Used by the UI's Test button: can the platform be reached and listed?"""
        try:
            platform = self.platform
            platform.get_endpoint("deployflow-connection-test")
        except PlatformNotFoundError:
            pass  # reached, authorised, and the probe name is simply not there
        except PlatformError as e:
            return False, str(e)
        return True, f"{platform.kind} platform reachable"


class AzureMLHook(MLPlatformHook):
    """The ``azure_ml`` connection type: subscription, resource group, workspace, optional service principal."""

    conn_type = AZURE_ML
    hook_name = "Azure Machine Learning (deployflow)"


class LocalRuntimeHook(MLPlatformHook):
    """The ``deployflow_local`` connection type: the local runtime's host, port and admin token."""

    conn_type = LOCAL_RUNTIME
    hook_name = "deployflow local runtime"
