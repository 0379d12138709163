"""What the runtime's router costs: the sample model scored directly vs through the router.

Starts a local runtime on free loopback ports, deploys the sample model with one
instance, then runs wrk against (a) the replica's own azmlinfsrv port and (b) the
router's scoring URI, at the same connection count, alternating rounds so that the
machine's noise falls on both alike. Writes the medians to bench/results/router_overhead.json.

    .venv/bin/python bench/router_overhead.py [--connections 1 8] [--seconds 10] [--rounds 3]

Targets (issue 2): router requests/s >= 85 % of direct; p50 added <= 1 ms.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess, deploy  # noqa: E402

RESULTS = REPO / "bench" / "results" / "router_overhead.json"
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_script(body: str, headers: dict[str, str], directory: Path) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    path = directory / f"wrk-{len(list(directory.iterdir()))}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    percentiles = {
        int(p): float(v) * UNITS_MS[unit] for p, v, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": percentiles[50],
        "p99_ms": percentiles[99],
        "non_2xx": int(errors.group(1)) if errors else 0,
        # azmlinfsrv closes every connection after answering, which wrk counts as read errors.
        "socket_errors": sum(map(int, socket_errors.groups())) if socket_errors else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="azmlinfsrv worker processes in the replica")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")

    body = (SAMPLE_MODEL / "sample-request.json").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        runtime = RuntimeProcess(Path(tmp) / "data")
        runtime.start()
        try:
            with runtime.client() as client:
                client.register_model("diabetes", SAMPLE_MODEL)
                endpoint = client.put_endpoint("bench", description="router overhead benchmark")
                deployment = deploy(client, "bench", "blue", worker_count=args.workers)
                client.set_traffic("bench", {"blue": 100})
                key = client.keys("bench")["primary_key"]
                pid = deployment["instances"][0]["pid"]
            direct_port = replica_port(pid)
            direct_url = f"http://127.0.0.1:{direct_port}/score"
            content = {"Content-Type": "application/json"}
            direct_script = wrk_script(body, content, Path(tmp))
            router_script = wrk_script(body, {**content, "Authorization": f"Bearer {key}"}, Path(tmp))
            run_wrk(direct_url, direct_script, max(args.connections), 2)  # warm-up
            run_wrk(endpoint["scoring_uri"], router_script, max(args.connections), 2)
            rounds: dict[int, dict[str, list[dict[str, float]]]] = {}
            for connections in args.connections:
                rounds[connections] = {"direct": [], "router": []}
                for _ in range(args.rounds):
                    for name, url, script in (
                        ("direct", direct_url, direct_script),
                        ("router", endpoint["scoring_uri"], router_script),
                    ):
                        rounds[connections][name].append(run_wrk(url, script, connections, args.seconds))
        finally:
            runtime.stop()

    figures = {
        "tool": "wrk -t1",
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "replica_workers": args.workers,
        "by_connections": {str(c): summarise(runs) for c, runs in rounds.items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    for connections, summary in figures["by_connections"].items():
        print(
            f"{connections} connections: direct {summary['direct']['requests_per_s']:.0f} req/s "
            f"p50 {summary['direct']['p50_ms']:.2f} ms; "
            f"router {summary['router']['requests_per_s']:.0f} req/s "
            f"p50 {summary['router']['p50_ms']:.2f} ms; ratio {summary['router_rps_ratio']:.2f}, "
            f"p50 added {summary['p50_added_ms']:.2f} ms"
        )


def summarise(runs: dict[str, list[dict[str, float]]]) -> dict[str, object]:
    """Medians over the rounds, the router's figures as ratios and differences against direct."""
    median = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    return {
        "direct": median["direct"],
        "router": median["router"],
        "router_rps_ratio": median["router"]["requests_per_s"] / median["direct"]["requests_per_s"],
        "p50_added_ms": median["router"]["p50_ms"] - median["direct"]["p50_ms"],
        "p99_added_ms": median["router"]["p99_ms"] - median["direct"]["p99_ms"],
        "all_rounds": runs,
    }


def replica_port(pid: int) -> int:
    import psutil

    for connection in psutil.Process(pid).net_connections("inet"):
        if connection.status == psutil.CONN_LISTEN:
            return connection.laddr.port
    raise RuntimeError(f"replica {pid} listens on no port")


if __name__ == "__main__":
    main()
