"""The connection decides the backend; a connection that cannot work says what is missing."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import Connection

from deployflow.hooks.ml_platform import platform_from_connection
from deployflow.platform.errors import PlatformError
from deployflow.provider_info import get_provider_info


def test_local_connection_builds_the_local_backend_on_the_given_port() -> None:
    platform = platform_from_connection(
        Connection(conn_id="c", conn_type="deployflow_local", host="127.0.0.1", port=7123, password="token")
    )
    assert platform.kind == "local"
    assert repr(platform) == "LocalPlatform('http://127.0.0.1:7123')"


def test_local_connection_without_token_is_refused() -> None:
    with pytest.raises(PlatformError, match="no admin token"):
        platform_from_connection(Connection(conn_id="c", conn_type="deployflow_local", host="127.0.0.1"))


def test_other_connection_types_are_refused_with_the_types_that_work() -> None:
    with pytest.raises(PlatformError, match="'azure_ml'.*'deployflow_local'"):
        platform_from_connection(Connection(conn_id="c", conn_type="http"))


def test_azure_ml_connection_names_the_missing_workspace_fields() -> None:
    conn = Connection(conn_id="aml", conn_type="azure_ml", extra=json.dumps({"subscription_id": "s"}))
    with pytest.raises(PlatformError, match="lacks resource_group, workspace_name"):
        platform_from_connection(conn)


def test_service_principal_needs_a_tenant() -> None:
    extra = {"subscription_id": "s", "resource_group": "r", "workspace_name": "w"}
    conn = Connection(conn_id="aml", conn_type="azure_ml", login="id", password="s3cr3t-value", extra=json.dumps(extra))
    with pytest.raises(PlatformError, match="no tenant_id") as error:
        platform_from_connection(conn)
    assert "s3cr3t-value" not in str(error.value)


def test_provider_info_registers_both_connection_types_with_importable_hooks() -> None:
    import importlib

    info = get_provider_info()
    types = {c["connection-type"]: c for c in info["connection-types"]}
    assert set(types) == {"azure_ml", "deployflow_local"}
    for conn_type, config in types.items():
        module, _, name = config["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert hook.conn_type == conn_type
    assert set(types["azure_ml"]["conn-fields"]) == {"subscription_id", "resource_group", "workspace_name", "tenant_id"}


def test_airflow_discovers_the_connection_types_through_the_entry_point() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "deployflow" in manager.providers
    assert manager.field_behaviours["azure_ml"]["relabeling"]["login"].startswith("Client ID")
    assert manager.field_behaviours["azure_ml"]["placeholders"]["extra__azure_ml__workspace_name"] == "mlw-prod"
    assert manager.connection_form_widgets["extra__azure_ml__workspace_name"].field["description"]
