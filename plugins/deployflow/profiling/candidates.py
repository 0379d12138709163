"""The configurations a profile tries, and what each costs per hour (pure, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deployflow.platform.specs import Resources


@dataclass(frozen=True)
class Candidate:
    """One configuration to profile: per-instance resources, server workers, instances under test.

    `worker_count` is the scoring server's worker processes (max concurrent requests per
    instance); `instance_count` is how many instances the test pool runs while measuring.
    """

    name: str
    resources: Resources
    worker_count: int = 1
    instance_count: int = 1

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise ValueError("a profile candidate needs a non-empty name")
        if self.worker_count < 1:
            raise ValueError(f"candidate {self.name!r}: worker_count must be >= 1, got {self.worker_count}")
        if self.instance_count < 1:
            raise ValueError(f"candidate {self.name!r}: instance_count must be >= 1, got {self.instance_count}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "resources": self.resources.to_dict(),
            "worker_count": self.worker_count,
            "instance_count": self.instance_count,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        """From `{"name", "resources": {cpu, memory_gb, gpu, instance_type}, worker_count?, instance_count?}`."""
        unknown = set(data) - {"name", "resources", "worker_count", "instance_count"}
        if unknown:
            raise ValueError(f"profile candidate has unknown field(s) {sorted(unknown)}")
        if "name" not in data or "resources" not in data:
            raise ValueError(f"a profile candidate needs a name and resources, got fields {sorted(data)}")
        resources = data["resources"]
        if not isinstance(resources, Mapping):
            raise ValueError(f"candidate {data['name']!r}: resources must be an object, got {resources!r}")
        return cls(
            name=str(data["name"]),
            resources=Resources.from_dict(dict(resources)),
            worker_count=int(data.get("worker_count", 1)),
            instance_count=int(data.get("instance_count", 1)),
        )


def _price(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"price table: {what} must be a finite number >= 0 per hour, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PriceTable:
    """Hourly prices: a flat price per Azure instance type, or per cpu core, GB of memory and GPU.

    An instance type in `instance_types` is priced flat; otherwise the requested cpu,
    memory and gpu are priced by the unit rates. A configuration that cannot be priced
    is an error, never a free instance.
    """

    instance_types: Mapping[str, float] = field(default_factory=dict)
    per_cpu_core_hour: float | None = None
    per_gb_hour: float | None = None
    per_gpu_hour: float | None = None
    currency: str = "USD"

    def __post_init__(self) -> None:
        for name, price in self.instance_types.items():
            _price(price, f"instance type {name!r}")
        for label in ("per_cpu_core_hour", "per_gb_hour", "per_gpu_hour"):
            value = getattr(self, label)
            if value is not None:
                _price(value, label)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceTable:
        """From JSON: `{"currency"?, "instance_types"?: {name: price}, "per_cpu_core_hour"?, ...}`."""
        known = {"currency", "instance_types", "per_cpu_core_hour", "per_gb_hour", "per_gpu_hour"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"price table has unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        types = data.get("instance_types", {})
        if not isinstance(types, Mapping):
            raise ValueError(f"price table: instance_types must map a type name to a price, got {types!r}")
        if not types and data.get("per_cpu_core_hour") is None:
            raise ValueError("price table is empty: give instance_types prices or per_cpu_core_hour / per_gb_hour")
        return cls(
            instance_types={str(k): _price(v, f"instance type {k!r}") for k, v in types.items()},
            per_cpu_core_hour=data.get("per_cpu_core_hour"),
            per_gb_hour=data.get("per_gb_hour"),
            per_gpu_hour=data.get("per_gpu_hour"),
            currency=str(data.get("currency", "USD")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "instance_types": dict(self.instance_types),
            "per_cpu_core_hour": self.per_cpu_core_hour,
            "per_gb_hour": self.per_gb_hour,
            "per_gpu_hour": self.per_gpu_hour,
        }

    def instance_price(self, resources: Resources) -> float:
        """Price per hour of one instance with these resources."""
        if resources.instance_type and resources.instance_type in self.instance_types:
            return float(self.instance_types[resources.instance_type])
        if resources.cpu is None:
            if resources.instance_type:
                raise ValueError(
                    f"price table has no price for instance type {resources.instance_type!r}; "
                    f"add it to instance_types (known: {sorted(self.instance_types)})"
                )
            raise ValueError("cannot price resources with no cpu request and no instance type")
        if self.per_cpu_core_hour is None or self.per_gb_hour is None:
            raise ValueError(f"pricing {resources.describe()} needs per_cpu_core_hour and per_gb_hour in the table")
        if resources.memory_gb is None:
            raise ValueError(f"cannot price {resources.describe()}: give a memory_gb request")
        cost = resources.cpu * self.per_cpu_core_hour + resources.memory_gb * self.per_gb_hour
        if resources.gpu:
            if self.per_gpu_hour is None:
                raise ValueError(f"pricing {resources.describe()} needs per_gpu_hour in the table")
            cost += resources.gpu * self.per_gpu_hour
        return cost

    def cost_per_hour(self, candidate: Candidate, instances: int | None = None) -> float:
        """Price per hour of `instances` (default: the candidate's own count) instances of `candidate`."""
        count = candidate.instance_count if instances is None else instances
        return count * self.instance_price(candidate.resources)
