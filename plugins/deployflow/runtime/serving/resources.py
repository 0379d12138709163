"""Per-replica resource limits: cgroups where the machine allows them, else affinity + rlimit.

A replica's scoring server gets the cpu (fractional cores) and memory its deployment asks
for. Linux cgroups enforce both exactly; where they are not writable (no root, read-only
cgroupfs, another OS) the runtime falls back to pinning the replica to whole cores and
capping its address space, and says so in the deployment's status.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import shutil
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

log = logging.getLogger(__name__)

CFS_PERIOD_US = 100_000
# Python processes reserve far more address space than they touch (thread stacks, BLAS
# buffers); an address-space cap must leave room for that or it kills healthy replicas.
RLIMIT_AS_FLOOR_BYTES = 1 << 30


class Enforcement(StrEnum):
    CGROUP_V2 = "cgroup-v2"
    CGROUP_V1 = "cgroup-v1"
    AFFINITY_RLIMIT = "affinity+rlimit"
    NONE = "none"


@dataclass(frozen=True)
class ResourceLimits:
    """What one replica may use; ``None`` means unlimited."""

    cpu: float | None = None
    memory_mb: int | None = None

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory_mb is None else self.memory_mb * 1024 * 1024


@dataclass
class Placement:
    """Where a replica runs: applied in the child between fork and exec, released after exit."""

    enforcement: Enforcement
    cgroup_dirs: list[Path] = field(default_factory=list)
    cpus: set[int] | None = None
    address_space_bytes: int | None = None

    def apply_in_child(self) -> None:
        """Runs in the forked child (no locks, no logging): join the cgroups or set the limits."""
        pid = str(os.getpid()).encode()
        for directory in self.cgroup_dirs:
            fd = os.open(directory / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)
        if self.address_space_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (self.address_space_bytes, self.address_space_bytes))

    def release(self) -> None:
        for directory in self.cgroup_dirs:
            try:
                directory.rmdir()
            except OSError as e:
                log.warning("could not remove cgroup %s: %s", directory, e)


def _own_cgroup_paths() -> dict[str, str]:
    """Controller name (or "" for cgroup v2) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _mount_points() -> dict[str, Path]:
    """cgroup mount points by controller ("" for the cgroup v2 hierarchy)."""
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fstype, _, options = after.split(" ", 2)
        mount_point = Path(before.split(" ")[4])
        if fstype == "cgroup2":
            mounts.setdefault("", mount_point)
        elif fstype == "cgroup":
            for option in options.split(" ")[-1].split(","):
                if option in ("cpu", "memory"):
                    mounts.setdefault(option, mount_point)
    return mounts


class ResourceController:
    """Chooses the strongest enforcement this machine allows, once, and places replicas."""

    def __init__(self, group_name: str, *, prefer: Enforcement | None = None) -> None:
        self.group_name = group_name
        self._next_cpu = 0
        self.enforcement, self._bases = self._detect(prefer)
        log.info("replica resource enforcement: %s", self.enforcement.value)

    def _detect(self, prefer: Enforcement | None) -> tuple[Enforcement, list[Path]]:
        try:
            own, mounts = _own_cgroup_paths(), _mount_points()
        except OSError:
            return Enforcement.AFFINITY_RLIMIT, []
        order = [Enforcement.CGROUP_V2, Enforcement.CGROUP_V1]
        if prefer is not None:
            order = [prefer] if prefer in order else []
        for candidate in order:
            bases = self._try(candidate, own, mounts)
            if bases:
                return candidate, bases
        return Enforcement.AFFINITY_RLIMIT, []

    def _try(self, candidate: Enforcement, own: dict[str, str], mounts: dict[str, Path]) -> list[Path]:
        if candidate is Enforcement.CGROUP_V2:
            if "" not in mounts or "" not in own:
                return []
            parent = mounts[""] / own[""].lstrip("/")
            try:
                if not {"cpu", "memory"} <= set((parent / "cgroup.controllers").read_text().split()):
                    return []
                base = parent / self.group_name
                base.mkdir(exist_ok=True)
                (base / "cgroup.subtree_control").write_text("+cpu +memory")
                self._probe(candidate, base)
            except OSError:
                return []
            return [base]
        bases = []
        for controller in ("cpu", "memory"):
            if controller not in mounts or controller not in own:
                return []
            base = mounts[controller] / own[controller].lstrip("/") / self.group_name
            try:
                base.mkdir(exist_ok=True)
            except OSError:
                return []
            bases.append(base)
        try:
            for base in bases:
                self._probe(candidate, base)
        except OSError:
            return []
        return bases

    def _probe(self, candidate: Enforcement, base: Path) -> None:
        probe = base / "probe"
        probe.mkdir(exist_ok=True)
        try:
            self._write_limits(candidate, [probe], ResourceLimits(cpu=0.5, memory_mb=256))
        finally:
            probe.rmdir()

    def place(self, replica_id: str, limits: ResourceLimits) -> Placement:
        """Create the replica's groups (or pick its cores) and write its limits."""
        if self.enforcement in (Enforcement.CGROUP_V1, Enforcement.CGROUP_V2):
            dirs = [base / replica_id for base in self._bases]
            for directory in dirs:
                directory.mkdir(exist_ok=True)
            self._write_limits(self.enforcement, dirs, limits)
            return Placement(self.enforcement, cgroup_dirs=dirs)
        cpus = None
        if limits.cpu is not None:
            available = sorted(os.sched_getaffinity(0))
            want = min(len(available), max(1, math.ceil(limits.cpu)))
            cpus = {available[(self._next_cpu + i) % len(available)] for i in range(want)}
            self._next_cpu = (self._next_cpu + want) % len(available)
        address_space = None
        if limits.memory_bytes is not None:
            address_space = max(limits.memory_bytes, RLIMIT_AS_FLOOR_BYTES)
        return Placement(Enforcement.AFFINITY_RLIMIT, cpus=cpus, address_space_bytes=address_space)

    @staticmethod
    def _write_limits(enforcement: Enforcement, dirs: list[Path], limits: ResourceLimits) -> None:
        quota = None if limits.cpu is None else max(1000, int(limits.cpu * CFS_PERIOD_US))
        for directory in dirs:
            if enforcement is Enforcement.CGROUP_V2:
                (directory / "cpu.max").write_text(f"{quota or 'max'} {CFS_PERIOD_US}")
                memory = limits.memory_bytes
                (directory / "memory.max").write_text(str(memory) if memory else "max")
            elif (directory / "cpu.cfs_quota_us").exists():
                (directory / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
                (directory / "cpu.cfs_quota_us").write_text(str(quota or -1))
            elif (directory / "memory.limit_in_bytes").exists():
                memory = limits.memory_bytes
                (directory / "memory.limit_in_bytes").write_text(str(memory) if memory else "-1")

    def close(self) -> None:
        """Remove the runtime's own group once every replica has been released."""
        for base in self._bases:
            shutil.rmtree(base / "probe", ignore_errors=True)
            try:
                base.rmdir()
            except OSError as e:
                log.debug("cgroup %s not removed: %s", base, e)
