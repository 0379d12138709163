"""Kubernetes resource quantities for Azure ML's Kubernetes compute, written one way everywhere.

A deployment's ``ResourceSettings`` and an ``InstanceType`` custom resource both take cpu and
memory as Kubernetes quantities ("500m", "2Gi"); the contract speaks in cores and GB. Memory
is read as GiB, the unit Kubernetes quantities use, so 1.5 becomes "1536Mi".
"""

from __future__ import annotations

import re

from deployflow.platform.specs import Resources

_QUANTITY = re.compile(r"^([0-9]*\.?[0-9]+)([a-zA-Z]*)$")
_MEMORY_UNITS_GIB = {
    "": 1 / 1024**3,
    "Ki": 1 / 1024**2,
    "Mi": 1 / 1024,
    "Gi": 1.0,
    "Ti": 1024.0,
    "k": 1e3 / 1024**3,
    "K": 1e3 / 1024**3,
    "M": 1e6 / 1024**3,
    "G": 1e9 / 1024**3,
    "T": 1e12 / 1024**3,
}


def format_cpu(cores: float) -> str:
    """Cores as a quantity: whole cores as "2", anything else in millicores ("500m")."""
    millicores = round(cores * 1000)
    if millicores <= 0:
        raise ValueError(f"cpu must be at least 1 millicore, got {cores}")
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def format_memory(gib: float) -> str:
    """GiB as a quantity: whole GiB as "2Gi", anything else in MiB ("1536Mi")."""
    mib = round(gib * 1024)
    if mib <= 0:
        raise ValueError(f"memory must be at least 1 MiB, got {gib} GB")
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def parse_cpu(text: str) -> float:
    """A cpu quantity ("500m", "1", "0.5") in cores."""
    number, unit = _split(text, "cpu")
    if unit == "m":
        return number / 1000
    if unit:
        raise ValueError(f"cpu quantity {text!r} has an unknown unit {unit!r}")
    return number


def parse_memory(text: str) -> float:
    """A memory quantity ("2Gi", "1536Mi", "2G") in GiB."""
    number, unit = _split(text, "memory")
    if unit not in _MEMORY_UNITS_GIB:
        raise ValueError(f"memory quantity {text!r} has an unknown unit {unit!r}")
    return number * _MEMORY_UNITS_GIB[unit]


def instance_type_name(resources: Resources) -> str:
    """A stable Kubernetes name for a resource shape, e.g. ``cpu500m-mem2gi`` or ``cpu4-mem16gi-gpu1``."""
    if resources.cpu is None or resources.memory_gb is None:
        raise ValueError(f"an instance type needs both cpu and memory_gb, got {resources.describe()}")
    name = f"cpu{format_cpu(resources.cpu)}-mem{format_memory(resources.memory_gb)}".lower()
    return f"{name}-gpu{resources.gpu}" if resources.gpu else name


def _split(text: str, what: str) -> tuple[float, str]:
    # the service may hand a quantity back quoted ('"500m"'), as it was once sent through YAML
    match = _QUANTITY.match(str(text).strip().strip("\"'").strip())
    if not match:
        raise ValueError(f"{what} quantity {text!r} is not a Kubernetes quantity")
    return float(match.group(1)), match.group(2)
