"""How fast deployflow's load generator is next to wrk, on the same server and connection count.

Starts a minimal fast HTTP server on a free loopback port (or uses --url, loopback only),
measures our generator closed loop (its maximum rate, and p50/p99) and wrk -t1 at the
same connections and duration, in alternating rounds (medians reported), then ours open
loop at rising fractions of its closed-loop rate (does it keep the schedule?). Each closed
round also gives the generator's CPU time per request (user + system, its own process;
wrk's from its rusage), which a shared machine's noise moves less than the rates. Installs
Debian's `wrk` when missing and running as root. Writes bench/results/loadgen_vs_wrk.json.

    .venv/bin/python bench/loadgen_vs_wrk.py [--connections 16] [--seconds 4] [--rounds 3] [--url URL]

Target: our closed-loop requests/s >= 70 % of wrk's, the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from deployflow.loadtest import MAX_RATE, LoadResult, RequestSpec, Schedule, run_closed_loop, run_open_loop  # noqa: E402
from deployflow.loadtest.generator import DEFAULT_MAX_IN_FLIGHT  # noqa: E402
from deployflow.loadtest.split import DEFAULT_MAX_RATE_PER_WORKER  # noqa: E402

RESULTS = REPO / "bench" / "results" / "loadgen_vs_wrk.json"
TARGET_RATIO = 0.7
OPEN_LOOP_FRACTIONS = (0.5, 0.7, 0.9)  # of our closed-loop rate
OPEN_LOOP_SECONDS = 3.0
# Absolute open-loop rates for one generator process, around the split's max_rate_per_worker default.
PER_WORKER_RATES = [10_000, 20_000, 30_000, 40_000, 60_000]
WARM_UP_S = 1
SERVER_READY_S = 15.0
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
MS_PER_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


# The server, run as `loadgen_vs_wrk.py --serve` in its own process (its own core).


class _FixedAnswer(asyncio.Protocol):
    """Answers each request head with the same 200; bodies are not expected (GET only)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        self.pending += data
        heads = self.pending.count(b"\r\n\r\n")
        if heads:
            self.pending = self.pending[self.pending.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * heads)


async def _serve() -> None:
    server = await asyncio.get_running_loop().create_server(_FixedAnswer, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)  # the parent waits for this line
    await server.serve_forever()


def serve() -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve())
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve())


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def start_server() -> tuple[subprocess.Popen[str], str]:
    """Launch the server process and wait for the port it prints; fail fast if it dies."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], SERVER_READY_S)
    line = proc.stdout.readline().strip() if ready else ""
    if not line.isdigit():
        proc.kill()
        raise RuntimeError(f"benchmark server did not start (exit code {proc.poll()}, said {line!r})")
    return proc, f"http://127.0.0.1:{line}/"


# The two load generators.


def ensure_wrk() -> str:
    """Path to wrk, installing Debian's package when missing and allowed to."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("wrk is not installed and this is not root: install Debian's package first (apt-get install wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "wrk"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        subprocess.run(install, env=env, capture_output=True, check=False)
    found = shutil.which("wrk")
    if not found:
        sys.exit("could not install wrk with apt-get; install Debian's package `wrk` and run again")
    return found


def run_wrk(wrk: str, url: str, connections: int, seconds: int) -> dict[str, float | None]:
    """wrk with one thread, like our one process; its closed-loop rate and latency percentiles."""
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rate = re.search(r"^Requests/sec:\s*([\d.]+)", out, re.M)
    dist = {p: float(v) * MS_PER_UNIT[u] for p, v, u in re.findall(r"^\s*(\d+)%\s+([\d.]+)(us|ms|s)$", out, re.M)}
    if rate is None or "50" not in dist or "99" not in dist:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    socket_errors = re.findall(r"(?:connect|read|write|timeout) (\d+)", out)
    requests = re.search(r"^\s*(\d+) requests in", out, re.M)
    return {
        "requests_per_s": float(rate.group(1)),
        "p50_ms": dist["50"],
        "p99_ms": dist["99"],
        "errors": sum(map(int, socket_errors)) + (int(non_2xx.group(1)) if non_2xx else 0),
        "cpu_us_per_request": round(cpu_s / int(requests.group(1)) * 1e6, 2) if requests else None,
    }


def run_ours_closed(request: RequestSpec, connections: int, seconds: int) -> dict[str, Any]:
    """Our generator closed loop, with the CPU time it spent per response."""
    before = time.process_time()
    result = run_closed_loop(request, duration_s=seconds, concurrency=connections)
    cpu_s = time.process_time() - before
    return {**figures(result), "cpu_us_per_request": round(cpu_s / max(result.completed, 1) * 1e6, 2)}


def figures(result: LoadResult) -> dict[str, Any]:
    latency = result.latency_ms
    return {
        "requests_per_s": round(result.achieved_rate, 1),
        "p50_ms": latency.p50,
        "p99_ms": latency.p99,
        "errors": result.error_count,
    }


def open_loop_steps(request: RequestSpec, max_rate: float, connections: int) -> list[dict[str, Any]]:
    """Open loop at rising fractions of the closed-loop rate: which rates are kept on schedule."""
    steps = []
    for fraction in OPEN_LOOP_FRACTIONS:
        rate = min(round(fraction * max_rate), MAX_RATE)
        result = run_open_loop(request, Schedule.constant(rate, OPEN_LOOP_SECONDS), max_in_flight=connections)
        steps.append(
            {
                "requested_per_s": rate,
                **figures(result),
                "achieved_fraction": round(result.achieved_fraction or 0.0, 3),
                "fell_behind": result.generator_fell_behind,
                "late_sends": result.generator_lag.late_sends,
                "late_dispatches": result.generator_lag.late_dispatches,  # the generator's own CPU
                "slot_waits": result.generator_lag.slot_waits,  # every connection busy
            }
        )
    return steps


def per_worker_ladder(request: RequestSpec, rates: list[int]) -> list[dict[str, Any]]:
    """Open loop at absolute rates with the stress test's own in-flight limit (DEFAULT_MAX_IN_FLIGHT): the
    rates one generator process keeps on schedule, which is what ``max_rate_per_worker`` stands for."""
    steps = []
    for rate in rates:
        result = run_open_loop(request, Schedule.constant(rate, OPEN_LOOP_SECONDS), max_in_flight=DEFAULT_MAX_IN_FLIGHT)
        steps.append(
            {
                "requested_per_s": rate,
                **figures(result),
                "achieved_fraction": round(result.achieved_fraction or 0.0, 3),
                "fell_behind": result.generator_fell_behind,
                "late_sends": result.generator_lag.late_sends,
            }
        )
    return steps


def compare(wrk: str, url: str, connections: int, seconds: int, rounds: int) -> dict[str, Any]:
    """Ours and wrk closed loop, alternating rounds so the machine's noise falls on both alike."""
    request = RequestSpec(url, method="GET")  # refuses anything but loopback
    run_closed_loop(request, duration_s=WARM_UP_S, concurrency=connections)
    run_wrk(wrk, url, connections, WARM_UP_S)
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for _ in range(rounds):
        ours.append(run_ours_closed(request, connections, seconds))
        theirs.append(run_wrk(wrk, url, connections, seconds))
    ours_median, theirs_median = median_of(ours), median_of(theirs)
    steps = open_loop_steps(request, ours_median["requests_per_s"], connections)
    kept = [s["requested_per_s"] for s in steps if not s["fell_behind"]]
    ladder = per_worker_ladder(request, PER_WORKER_RATES)
    held = [s["requested_per_s"] for s in ladder if not s["fell_behind"] and s["achieved_fraction"] >= 0.99]
    ratios = [o["requests_per_s"] / t["requests_per_s"] for o, t in zip(ours, theirs, strict=True)]
    ratio = statistics.median(ratios)
    return {
        "wrk_t1": theirs_median,
        "loadgen_closed_loop": ours_median,
        "loadgen_open_loop": steps,
        "loadgen_open_loop_max_rate_on_schedule": max(kept, default=None),
        "per_worker_ladder": {"max_in_flight": DEFAULT_MAX_IN_FLIGHT, "steps": ladder},
        "per_worker_max_rate_on_schedule": max(held, default=None),
        "max_rate_per_worker_default": DEFAULT_MAX_RATE_PER_WORKER,
        "rate_ratio": round(ratio, 3),
        "rate_ratio_per_round": [round(r, 3) for r in ratios],
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "rounds": {"wrk_t1": theirs, "loadgen_closed_loop": ours},
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    values = {key: [run[key] for run in runs if run[key] is not None] for key in runs[0]}
    return {key: round(statistics.median(v), 3) if v else None for key, v in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a loopback server to use instead of the built-in one")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=4, help="per measured phase (at most 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of ours and wrk")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if not 1 <= args.seconds <= 10 or not 1 <= args.rounds <= 5:
        parser.error("--seconds must be in 1..10 and --rounds in 1..5 (the whole run stays near a minute)")
    wrk = ensure_wrk()
    began = time.monotonic()
    server, url = (None, args.url) if args.url else start_server()
    try:
        figures_ = compare(wrk, url, args.connections, args.seconds, args.rounds)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=5)
    report = {
        "server": args.url or "built-in fixed-answer server (uvloop, one process)",
        "connections": args.connections,
        "seconds_per_phase": args.seconds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **figures_,
        "wall_time_s": round(time.monotonic() - began, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "rounds"}, indent=2))


if __name__ == "__main__":
    main()
