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
# Control-plane documents are small; a job submission with a long file list is the largest.
DEFAULT_CONTROL_MAX_BODY_BYTES = 1_000_000
DEFAULT_LOG_CAP_BYTES = 5 * 1024 * 1024
# One header field the scoring server (gunicorn's limit_request_field_size) takes; the router refuses longer.
MAX_HEADER_FIELD_BYTES = 8190
# How long a batch environment's warm worker template outlives its last job (0: no templates,
# every worker a fresh process). azure-ai-ml's AmlCompute scales idle nodes down after 120 s by default.
DEFAULT_BATCH_WARM_IDLE_S = 600.0
# Batch worker processes running at once, across all jobs (the local "cluster"): one per core.
DEFAULT_BATCH_SLOTS = os.cpu_count() or 1
TOKEN_ENV = "DEPLOYFLOW_RUNTIME_TOKEN"
TOKEN_FILE = "admin-token"
MIN_TOKEN_LENGTH = 32


@dataclass(frozen=True)
class RouterLimits:
    """What one client connection to the router may hold: a slow, idle or oversized client must not
    use up the runtime's file descriptors or memory. The defaults are nginx's order of magnitude."""

    # the header block (field names and values), the request target, the header fields: the scoring
    # server behind the router (azmlinfsrv's gunicorn) takes 100 fields, and the router adds up to 4
    max_header_bytes: int = 16 * 1024
    max_url_bytes: int = 8 * 1024
    max_headers: int = 96
    # a keep-alive connection with no request in progress is closed after idle_timeout_s; a request
    # whose head and body are not all in within read_timeout_s of its first byte gets a 408
    idle_timeout_s: float = 60.0
    read_timeout_s: float = 30.0
    # client connections open at once; one more is answered 503 and closed
    max_connections: int = 1024
    # how deeply a JSON scoring body may nest ([ and {); deeper is a 400 before it reaches score.py, whose
    # parser (Python's json) fails near 1,000 levels with a RecursionError
    max_json_depth: int = 512


class ConfigError(ValueError):
    """The runtime cannot start with this setting; the message says what to change."""


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
    control_max_body_bytes: int = DEFAULT_CONTROL_MAX_BODY_BYTES
    log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES
    batch_warm_idle_s: float = DEFAULT_BATCH_WARM_IDLE_S
    batch_slots: int = DEFAULT_BATCH_SLOTS
    enforcement: Enforcement | None = None
    metrics: bool = True
    router_limits: RouterLimits = RouterLimits()
    # Who model code runs as when the runtime is root (isolation.child_user); "root" keeps root.
    child_user: str | None = None
    # The interpreter model environments are built from (default: the runtime's own).
    model_python: str | None = None

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
    """The control plane's admin token: from the environment, else a file only the owner can read.

    An empty or short token is refused rather than trusted: ``Authorization: Bearer `` must never
    be an admin, and a token file a crash left empty must not become one.
    """
    import secrets

    if TOKEN_ENV in os.environ:
        return _checked(os.environ[TOKEN_ENV], f"${TOKEN_ENV}", f"unset it or set it to {MIN_TOKEN_LENGTH}+ characters")
    path = config.token_file
    if path.exists():
        return _checked(path.read_text().strip(), str(path), "delete the file and the runtime writes a new token")
    token = secrets.token_urlsafe(32)
    write_secret(path, token)
    return token


def _checked(token: str, where: str, fix: str) -> str:
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"the admin token in {where} has {len(token)} characters; at least {MIN_TOKEN_LENGTH} are needed: {fix}"
        )
    return token


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` as an owner-only (0600) file that is never seen half-written: a temporary file,
    flushed to disk, renamed over ``path``, and the folder flushed so the rename survives a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
