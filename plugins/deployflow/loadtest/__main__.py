"""Command line: `python -m deployflow.loadtest --url ... --rate 50 --duration 10`, JSON out.

Handy to try an endpoint by hand with exactly the generator the DAGs use.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from deployflow.loadtest.generator import DEFAULT_LAG_THRESHOLD_MS, DEFAULT_MAX_IN_FLIGHT
from deployflow.loadtest.result import LoadResult
from deployflow.loadtest.runner import run_closed_loop, run_open_loop
from deployflow.loadtest.schedule import Schedule, Step
from deployflow.loadtest.spec import DEFAULT_TIMEOUT_S, RequestSpec


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header must look like 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _step(text: str) -> Step:
    rate, sep, duration = text.partition(":")
    try:
        return Step(float(rate), float(duration))
    except ValueError as exc:
        hint = "" if sep else " (expected RATE:SECONDS)"
        raise argparse.ArgumentTypeError(f"bad step {text!r}{hint}: {exc}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deployflow.loadtest",
        description="Open-loop (constant arrival rate) HTTP load test; prints the result as JSON.",
    )
    parser.add_argument("--url", required=True, help="scoring URL, e.g. http://127.0.0.1:8080/score")
    parser.add_argument("--method", default="POST")
    body = parser.add_mutually_exclusive_group()
    body.add_argument("--body-file", type=Path, help="file whose bytes are sent as the request body")
    body.add_argument("--body", help="request body as text (UTF-8)")
    parser.add_argument("--header", action="append", type=_header, default=[], help="'Name: value', repeatable")
    parser.add_argument("--allow-remote", action="store_true", help="allow a target that is not a loopback address")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds from intended send")
    parser.add_argument("--rate", type=float, help="requests per second (open loop)")
    parser.add_argument("--duration", type=float, help="seconds (open loop with --rate, or closed loop)")
    parser.add_argument(
        "--step", action="append", type=_step, default=[], help="RATE:SECONDS, repeatable: a stepped schedule"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the rate (open loop)")
    parser.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT)
    parser.add_argument("--lag-threshold-ms", type=float, default=DEFAULT_LAG_THRESHOLD_MS)
    parser.add_argument("--closed-loop", action="store_true", help="back-to-back requests instead of a rate")
    parser.add_argument("--concurrency", type=int, default=1, help="clients in closed-loop mode")
    parser.add_argument("--no-histograms", action="store_true", help="leave encoded histograms out of the JSON")
    return parser


def _run(args: argparse.Namespace) -> LoadResult:
    """The test the arguments describe; ValueError for anything the user has to fix."""
    body = args.body_file.read_bytes() if args.body_file is not None else (args.body or "").encode()
    request = RequestSpec(
        url=args.url,
        method=args.method,
        body=body,
        headers=dict(args.header),
        timeout_s=args.timeout,
        allow_remote=args.allow_remote,
    )
    if args.closed_loop:
        if args.duration is None:
            raise ValueError("--closed-loop needs --duration")
        return run_closed_loop(request, duration_s=args.duration, concurrency=args.concurrency)
    if args.step:
        schedule = Schedule.stepped(args.step)
    elif args.rate is not None and args.duration is not None:
        schedule = Schedule.constant(args.rate, args.duration)
    else:
        raise ValueError("give --rate and --duration, or one or more --step RATE:SECONDS")
    return run_open_loop(
        request,
        schedule,
        workers=args.workers,
        max_in_flight=args.max_in_flight,
        lag_threshold_ms=args.lag_threshold_ms,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = _run(args)
    except ValueError as exc:
        parser.error(str(exc))
    output = result.to_dict()
    if args.no_histograms:
        output.pop("histograms")
    json.dump(output, sys.stdout, indent=2)
    sys.stdout.write("\n")
    for note in result.notes():
        print(f"warning: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
