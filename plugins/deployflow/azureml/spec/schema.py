"""The part of Azure ML's REST specification (2025-12-01, stable) that deployflow's requests touch,
and a validator for request bodies against it.

The definitions in ``mfe-2025-12-01.json`` (package data, beside this module) are transcribed from the specification's
``mfe.json`` and ``machineLearningServices.json`` (Swagger 2.0), keeping what a request body is
checked against: types, required properties, enums, patterns, bounds, ``additionalProperties``,
``allOf`` inheritance and ``discriminator`` / ``x-ms-discriminator-value`` polymorphism.
Descriptions are left out. ``readOnly`` properties are refused in requests, as ARM ignores or
rejects them and the SDK never sends them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

SPEC_FILE = Path(str(files("deployflow.azureml.spec") / "mfe-2025-12-01.json"))

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


@dataclass(frozen=True)
class SpecSchema:
    definitions: dict[str, Any]
    name_patterns: dict[str, str]
    service_name_rules: dict[str, str]

    @classmethod
    def load(cls, path: Path = SPEC_FILE) -> SpecSchema:
        return _load(path)

    def name_pattern(self, kind: str) -> str | None:
        """The pattern the service's path parameter puts on a resource name of this kind."""
        return self.name_patterns.get(kind)

    def service_name_rule(self, kind: str) -> str | None:
        """The stricter rule the service applies to endpoint and deployment names."""
        return self.service_name_rules.get(kind)

    def validate(self, definition: str, value: Any) -> list[str]:
        """Every way ``value`` breaks the named definition, as "path: problem" lines."""
        errors: list[str] = []
        self._check({"$ref": f"#/definitions/{definition}"}, value, "$", errors)
        return errors

    # a definition's properties, required names and additionalProperties, with its allOf parents folded in
    def _flatten(self, name: str) -> tuple[dict[str, Any], set[str], Any]:
        schema = self.definitions[name]
        properties: dict[str, Any] = {}
        required: set[str] = set()
        for parent in schema.get("allOf", []):
            p_props, p_required, _ = self._flatten(_ref_name(parent["$ref"]))
            properties.update(p_props)
            required |= p_required
        properties.update(schema.get("properties", {}))
        required |= set(schema.get("required", []))
        return properties, required, schema.get("additionalProperties", True)

    def _subtype(self, name: str, value: dict[str, Any], path: str, errors: list[str]) -> str | None:
        """For a polymorphic base, the subtype whose x-ms-discriminator-value the value names."""
        discriminator = self._discriminator(name)
        if discriminator is None:
            return name
        given = value.get(discriminator)
        if given is None:
            errors.append(f"{path}: {discriminator} is required (it selects the kind of {name})")
            return None
        for candidate, schema in self.definitions.items():
            if schema.get("x-ms-discriminator-value") == given and self._inherits(candidate, name):
                return candidate
        if self.definitions[name].get("x-ms-discriminator-value") == given:
            return name
        known = sorted(
            s["x-ms-discriminator-value"]
            for c, s in self.definitions.items()
            if "x-ms-discriminator-value" in s and self._inherits(c, name)
        )
        errors.append(f"{path}: {discriminator}={given!r} is not a kind of {name} ({', '.join(known)})")
        return None

    def _discriminator(self, name: str) -> str | None:
        schema = self.definitions[name]
        if "discriminator" in schema:
            return schema["discriminator"]
        return None

    def _inherits(self, candidate: str, base: str) -> bool:
        parents = [_ref_name(p["$ref"]) for p in self.definitions[candidate].get("allOf", [])]
        return base in parents or any(self._inherits(p, base) for p in parents)

    def _check(self, schema: dict[str, Any], value: Any, path: str, errors: list[str]) -> None:
        if value is None:
            if not schema.get("x-nullable", True) and "$ref" not in schema:
                errors.append(f"{path}: may not be null")
            return
        if "$ref" in schema:
            name = _ref_name(schema["$ref"])
            if name not in self.definitions:
                raise KeyError(f"the vendored spec has no definition {name} (referenced at {path})")
            target = self.definitions[name]
            if (
                "enum" in target
                or target.get("type") not in (None, "object")
                or ("properties" not in target and "allOf" not in target and "additionalProperties" in target)
            ):
                self._check(target, value, path, errors)
                return
            self._check_object(name, value, path, errors)
            return
        expected = schema.get("type")
        if expected and not _is_type(value, expected):
            errors.append(f"{path}: expected {expected}, got {type(value).__name__} {value!r}"[:300])
            return
        if "enum" in schema and value not in schema["enum"]:
            errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
        if isinstance(value, str):
            if "pattern" in schema and not re.search(schema["pattern"], value):
                errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
            if len(value) < schema.get("minLength", 0):
                errors.append(f"{path}: shorter than {schema['minLength']}")
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                errors.append(f"{path}: longer than {schema['maxLength']}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                errors.append(f"{path}: {value} is above the maximum {schema['maximum']}")
        if isinstance(value, list) and "items" in schema:
            for i, item in enumerate(value):
                self._check(schema["items"], item, f"{path}[{i}]", errors)
        if isinstance(value, dict):
            extra = schema.get("additionalProperties")
            properties = schema.get("properties", {})
            for key, item in value.items():
                if key in properties:
                    self._check(properties[key], item, f"{path}.{key}", errors)
                elif isinstance(extra, dict):
                    self._check(extra, item, f"{path}.{key}", errors)
            for key in schema.get("required", []):
                if key not in value:
                    errors.append(f"{path}: {key} is required")

    def _check_object(self, name: str, value: Any, path: str, errors: list[str]) -> None:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object ({name}), got {type(value).__name__}")
            return
        concrete = self._subtype(name, value, path, errors)
        if concrete is None:
            return
        properties, required, extra = self._flatten(concrete)
        for key in sorted(required - value.keys()):
            errors.append(f"{path}: {key} is required ({concrete})")
        for key, item in value.items():
            if key in properties:
                prop = properties[key]
                if prop.get("readOnly"):
                    errors.append(f"{path}.{key}: is read-only and may not be sent ({concrete})")
                    continue
                self._check(prop, item, f"{path}.{key}", errors)
            elif extra is False:
                errors.append(f"{path}.{key}: {concrete} has no property {key}")
            elif isinstance(extra, dict):
                self._check(extra, item, f"{path}.{key}", errors)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _is_type(value: Any, expected: str) -> bool:
    if expected in ("integer", "number") and isinstance(value, bool):
        return False
    if expected == "number" and isinstance(value, int):
        return True
    return isinstance(value, _TYPES.get(expected, (object,)))


@cache
def _load(path: Path) -> SpecSchema:
    data = json.loads(path.read_text())
    return SpecSchema(
        definitions=data["definitions"],
        name_patterns=data["namePatterns"],
        service_name_rules=data.get("serviceNameRules", {}),
    )
