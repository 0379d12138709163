"""Run the local runtime: control plane, router and replicas in one process, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import resource
import signal
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from deployflow.runtime.child import CHILD_SCRIPTS
from deployflow.runtime.config import ConfigError, RuntimeConfig, load_or_create_token
from deployflow.runtime.control.api import create_app
from deployflow.runtime.control.service import Runtime
from deployflow.runtime.isolation import (
    ChildUser,
    IsolationError,
    blocked_at,
    child_user,
    model_python,
    require_reachable,
    secure_data_dir,
)
from deployflow.runtime.serving.router import Router

# Everything the runtime writes is its own: files 0600, folders 0700, unless shared on purpose.
UMASK = 0o077

log = logging.getLogger(__name__)


class _ControlPlane(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime shuts down replicas first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(config: RuntimeConfig, *, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop every replica; state stays in the data dir."""
    os.umask(UMASK)
    user = child_user(config.child_user)
    secure_data_dir(config.data_dir, user)
    if user is not None:
        check_reachable(config, user)
        log.info("model code runs as user %s (uid %d)", user.name, user.uid)
    elif os.geteuid() == 0:
        log.warning("model code runs as root (--child-user root): it can read the admin token and the state")
    open_files_for(config.router_limits.max_connections)
    token = load_or_create_token(config)
    runtime = Runtime(config, user)
    router = Router(runtime, config.max_body_bytes, metrics=config.metrics, limits=config.router_limits)
    control = _ControlPlane(
        uvicorn.Config(
            create_app(runtime, token), host=config.host, port=config.control_port,
            log_level="warning", lifespan="off", access_log=False,
        )
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    try:
        await router.start(config.host, config.router_port)
        control_task = asyncio.create_task(control.serve())
        while not control.started:
            if control_task.done():
                control_task.result()
                raise RuntimeError(f"control plane could not listen on {config.host}:{config.control_port}")
            await asyncio.sleep(0.02)
        log.info(
            "deployflow runtime ready: control plane %s, router on port %s, data in %s, admin token in %s",
            config.control_url(), config.router_port, config.data_dir, config.token_file,
        )  # fmt: skip
        # Everything loaded so far (FastAPI, pydantic, the restored endpoints) lives as long as the
        # process: keep it out of the cyclic collector's passes, which otherwise walk it again and
        # again as requests allocate (~8 % of the router's CPU, measured with perf).
        gc.freeze()
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stopping the runtime")
        control.should_exit = True
        await control_task
    finally:
        await router.close()
        await runtime.close()


def open_files_for(connections: int) -> None:
    """Raise the soft open-file limit (often 1024) so that --max-connections, not EMFILE, is what refuses:
    each client connection may hold an upstream one, and replicas and logs need their own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * connections + 512
    if soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft < wanted:
        log.warning("open files are capped at %d: fewer than --max-connections %d may be served", soft, connections)


def check_reachable(config: RuntimeConfig, user: ChildUser) -> None:
    """Fail at start, not at the first deployment, when model code could not reach what it runs from."""
    envs = config.environments_dir
    envs.mkdir(parents=True, exist_ok=True)
    if blocked_at(envs.parent, user) is None and blocked_at(envs, user) == envs and envs.stat().st_uid == os.geteuid():
        # The cache is ours and holds no secret (a folder made under the runtime's owner-only umask, or
        # an earlier run's): open it to the child user's group. Each environment is shared as it is built.
        os.chown(envs, -1, user.gid)
        envs.chmod(envs.stat().st_mode & 0o7777 | stat.S_IRGRP | stat.S_IXGRP)
    python = Path(model_python(user, config.model_python)).resolve()
    if not config.model_python and python != Path(sys.executable).resolve():
        log.info("model environments are built from %s: %s is out of reach of %s", python, sys.executable, user.name)
    require_reachable(python.parent, user, "the Python that model environments are built from (--model-python)")
    require_reachable(CHILD_SCRIPTS, user, "deployflow's scripts for model environments")
    require_reachable(config.data_dir, user, "the data dir")
    require_reachable(config.environments_dir, user, "the model environment cache")


def run(config: RuntimeConfig) -> None:
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(config))
    except (ConfigError, IsolationError) as e:
        raise SystemExit(f"deployflow runtime: {e}") from None
