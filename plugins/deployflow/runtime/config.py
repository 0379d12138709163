"""The runtime's settings and their defaults: one place for ports, limits and paths."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deployflow.runtime.serving.resources import Enforcement

LOOPBACK = "127.0.0.1"
DEFAULT_CONTROL_PORT = 7070
DEFAULT_ROUTER_PORT = 7071
# Azure ML online endpoints accept request bodies up to 1.5 MB.
DEFAULT_MAX_BODY_BYTES = 1_500_000
DEFAULT_LOG_CAP_BYTES = 5 * 1024 * 1024
# How long a batch environment's warm worker template outlives its last job (0: no templates,
# every worker a fresh process). azure-ai-ml's AmlCompute scales idle nodes down after 120 s by default.
DEFAULT_BATCH_WARM_IDLE_S = 600.0
# Batch worker processes running at once, across all jobs (the local "cluster"): one per core.
DEFAULT_BATCH_SLOTS = os.cpu_count() or 1
TOKEN_ENV = "DEPLOYFLOW_RUNTIME_TOKEN"
TOKEN_FILE = "admin-token"


@dataclass(frozen=True)
class RuntimeConfig:
    """Where the runtime keeps its state and where it listens."""

    data_dir: Path
    host: str = LOOPBACK
    control_port: int = DEFAULT_CONTROL_PORT
    router_port: int = DEFAULT_ROUTER_PORT
    advertise_host: str | None = None
    env_cache_dir: Path | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES
    batch_warm_idle_s: float = DEFAULT_BATCH_WARM_IDLE_S
    batch_slots: int = DEFAULT_BATCH_SLOTS
    enforcement: Enforcement | None = None
    metrics: bool = True

    @property
    def environments_dir(self) -> Path:
        return self.env_cache_dir or self.data_dir / "envs"

    @property
    def public_host(self) -> str:
        """The host put in scoring URIs: what clients dial, never the wildcard address."""
        if self.advertise_host:
            return self.advertise_host
        return LOOPBACK if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def token_file(self) -> Path:
        return self.data_dir / TOKEN_FILE

    def scoring_uri(self, endpoint: str) -> str:
        return f"http://{self.public_host}:{self.router_port}/endpoints/{endpoint}/score"

    def control_url(self) -> str:
        return f"http://{self.public_host}:{self.control_port}"


def load_or_create_token(config: RuntimeConfig) -> str:
    """The control plane's admin token: from the environment, else a file only the owner can read."""
    import secrets

    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    path = config.token_file
    if path.exists():
        return path.read_text().strip()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token
