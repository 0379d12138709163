"""JSON schemas for the trigger form, derived from the dataclasses that parse the same values.

A malformed candidate or rollout plan used to fail at its task a minute into the run; the
form now refuses it before any task runs. The schemas are written from the parsers' own
dataclasses (field names, types, which are required), so the form and the parser cannot
disagree on what a field is called or what it holds; ranges and cross-field rules stay
with the parsers, which still say what to fix.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from deployflow.checks import SEVERITIES_SCHEMA
from deployflow.loadtest import SLO
from deployflow.platform.specs import Resources
from deployflow.profiling import Candidate
from deployflow.profiling.runner import ProfileSettings
from deployflow.rollout.gates import GateSpec
from deployflow.rollout.plan import ON_INCONCLUSIVE, RolloutPlan

_SCALARS: dict[type, dict[str, Any]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
}


def _type_schema(hint: Any) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [_type_schema(arg) for arg in typing.get_args(hint)]
        return {"anyOf": options}
    if hint is type(None):
        return {"type": "null"}
    if dataclasses.is_dataclass(hint):
        return dataclass_schema(hint)
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    if origin in (list, tuple) or hint in (list, tuple):
        return {"type": "array"}
    return {"type": "object"}


def dataclass_schema(cls: type, *, overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """An object with exactly the dataclass's fields; the ones without defaults are required."""
    hints = typing.get_type_hints(cls)
    properties = {}
    required = []
    for item in dataclasses.fields(cls):
        properties[item.name] = (overrides or {}).get(item.name) or _type_schema(hints[item.name])
        if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
            required.append(item.name)
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    """The same object with every field optional: overrides of a default."""
    return {k: v for k, v in schema.items() if k != "required"}


RESOURCES_SCHEMA = dataclass_schema(Resources)
SLO_SCHEMA = dataclass_schema(SLO)
CANDIDATES_SCHEMA: dict[str, Any] = {"type": ["null", "array"], "items": dataclass_schema(Candidate)}
PROFILE_SETTINGS_SCHEMA = dataclass_schema(ProfileSettings)
STRESS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rate": {"type": "number", "exclusiveMinimum": 0},
        "duration_s": {"type": "number", "exclusiveMinimum": 0},
        "resources": RESOURCES_SCHEMA,
        # Above this rate the load is split into parts (mapped tasks, one per worker slot) that start together.
        "max_rate_per_worker": {"type": "number", "exclusiveMinimum": 0},
        # From the split's plan to the parts' shared start: time for every part to reach a worker.
        "start_lead_s": {"type": "number", "minimum": 0, "maximum": 600},
    },
    "required": ["rate", "duration_s", "resources"],
    "additionalProperties": False,
}
_STEP = {
    "anyOf": [
        {"type": "string", "pattern": r"^\s*(mirror|traffic|approve)\b"},
        {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": ["mirror", "traffic", "approval"]}},
        },
    ]
}
# Overrides of the default plan: every key optional, each as the plan itself holds it.
ROLLOUT_PLAN_SCHEMA: dict[str, Any] = _optional(
    dataclass_schema(
        RolloutPlan,
        overrides={
            "steps": {"type": "array", "items": _STEP, "minItems": 1},
            "gates": _optional(dataclass_schema(GateSpec)),
            "on_inconclusive": {"type": "string", "enum": list(ON_INCONCLUSIVE)},
        },
    )
)
ROLLOUT_PLAN_SCHEMA["properties"]["_comment"] = {"type": "string"}
SMOKE_CHECKS_SCHEMA = SEVERITIES_SCHEMA
