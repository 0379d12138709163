"""Each trigger's serialize() gives back every constructor argument, so the triggerer rebuilds the same wait."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

from deployflow.triggers.batch import BatchJobStateTrigger
from deployflow.triggers.blob import NewBlobsTrigger
from deployflow.triggers.ml_platform import DeploymentStateTrigger

# every argument away from its default, so a field serialize() forgets shows as a difference
CASES: list[tuple[type, str, dict[str, Any]]] = [
    (
        DeploymentStateTrigger,
        "deployflow.triggers.ml_platform.DeploymentStateTrigger",
        {"ml_platform_conn_id": "aml", "endpoint_name": "shop", "deployment_name": "green",
         "deadline": 1_900_000_000.5, "poll_interval": 2.5, "delete_on_kill": True},
    ),
    (
        BatchJobStateTrigger,
        "deployflow.triggers.batch.BatchJobStateTrigger",
        {"ml_platform_conn_id": "aml", "job_id": "score-42", "deadline": 1_900_000_000.5, "poll_interval": 3.0},
    ),
    (
        NewBlobsTrigger,
        "deployflow.triggers.blob.NewBlobsTrigger",
        {"wasb_conn_id": "blobs", "container": "in", "prefix": "daily/", "manifest_container": "out",
         "manifest_blob": "m/_manifest.json", "poll_interval": 7.0},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("trigger_class", "classpath", "kwargs"), CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_serialize_round_trips_every_constructor_argument(
    trigger_class: type, classpath: str, kwargs: dict[str, Any]
) -> None:
    assert set(kwargs) == set(inspect.signature(trigger_class).parameters)  # the case covers every argument

    path, serialized = trigger_class(**kwargs).serialize()

    assert (path, serialized) == (classpath, kwargs)
    module, _, name = path.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**serialized)
    assert rebuilt.serialize() == (path, serialized)
