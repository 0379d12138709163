"""``python -m deployflow.runtime``: start the local runtime that plays Azure ML's part."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from deployflow.runtime.config import (
    DEFAULT_BATCH_SLOTS,
    DEFAULT_BATCH_WARM_IDLE_S,
    DEFAULT_CONTROL_PORT,
    DEFAULT_ROUTER_PORT,
    LOOPBACK,
    RouterLimits,
    RuntimeConfig,
)
from deployflow.runtime.server import run
from deployflow.runtime.serving.resources import Enforcement

# RouterLimits' fields, each an option --max-header-bytes etc., with what going past it gets.
ROUTER_LIMITS = [
    ("max_header_bytes", int, "bytes of header fields in a request; more is a 431"),
    ("max_url_bytes", int, "bytes of a request's target (path and query); more is a 414"),
    ("max_headers", int, "header fields in a request; more is a 431"),
    ("read_timeout_s", float, "seconds a request's head and body may take to arrive; then a 408 and close"),
    ("idle_timeout_s", float, "seconds a keep-alive connection may wait for its next request; then closed"),
    ("max_connections", int, "client connections open at once; one more is answered 503 and closed"),
    ("max_json_depth", int, "levels of [ and { a JSON scoring body may nest; deeper is a 400"),
]


def parse_args(argv: list[str] | None = None) -> RuntimeConfig:
    parser = argparse.ArgumentParser(prog="python -m deployflow.runtime", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True, help="state, models, logs (created if missing)")
    parser.add_argument("--host", default=LOOPBACK, help="address to listen on (default: loopback only)")
    parser.add_argument("--control-port", type=int, default=DEFAULT_CONTROL_PORT)
    parser.add_argument("--router-port", type=int, default=DEFAULT_ROUTER_PORT)
    parser.add_argument("--advertise-host", help="host name put in scoring URIs (default: the listen address)")
    parser.add_argument("--env-cache-dir", type=Path, help="where model environments are built and reused")
    parser.add_argument(
        "--enforcement", choices=[e.value for e in Enforcement if e is not Enforcement.NONE],
        help="force a resource enforcement (default: the strongest this machine allows)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-warm-idle-s", type=float, default=DEFAULT_BATCH_WARM_IDLE_S,
        help="seconds a batch environment's warm worker template outlives its last job; 0 starts every worker "
        f"as a fresh process (default: {DEFAULT_BATCH_WARM_IDLE_S:g})",
    )  # fmt: skip
    parser.add_argument(
        "--batch-slots", type=int, default=DEFAULT_BATCH_SLOTS,
        help="batch worker processes at once, across jobs; a job waits as Queued until it has its slots "
        f"(default: one per core, {DEFAULT_BATCH_SLOTS})",
    )  # fmt: skip
    parser.add_argument(
        "--no-metrics", action="store_true",
        help="do not count answers for GET /metrics (to measure what counting costs the router)",
    )  # fmt: skip
    limits = parser.add_argument_group("router limits", "what one client connection may hold (refused with JSON)")
    defaults = RouterLimits()
    for name, kind, help_text in ROUTER_LIMITS:
        default = getattr(defaults, name)
        option = "--" + name.replace("_", "-")
        limits.add_argument(option, type=kind, default=default, help=f"{help_text} (default: {default:g})")
    parser.add_argument(
        "--child-user",
        help="when the runtime runs as root, the unprivileged user model code runs as (default: deployflow, "
        "created if absent); 'root' lets model code run as root, able to read the admin token and the state",
    )
    parser.add_argument(
        "--model-python",
        help="the Python model environments are built from (default: the runtime's own); under root it must be "
        "readable by the child user",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.batch_slots < 1:
        parser.error(f"--batch-slots must be at least 1, got {args.batch_slots}")
    for name, _, _ in ROUTER_LIMITS:
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be above 0, got {getattr(args, name):g}")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return RuntimeConfig(
        data_dir=args.data_dir.resolve(),
        host=args.host,
        control_port=args.control_port,
        router_port=args.router_port,
        advertise_host=args.advertise_host,
        env_cache_dir=args.env_cache_dir.resolve() if args.env_cache_dir else None,
        batch_warm_idle_s=max(args.batch_warm_idle_s, 0.0),
        batch_slots=args.batch_slots,
        enforcement=Enforcement(args.enforcement) if args.enforcement else None,
        metrics=not args.no_metrics,
        router_limits=RouterLimits(**{name: getattr(args, name) for name, _, _ in ROUTER_LIMITS}),
        child_user=args.child_user,
        model_python=str(Path(args.model_python).absolute()) if args.model_python else None,
    )


if __name__ == "__main__":
    run(parse_args())
