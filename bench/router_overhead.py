"""What the runtime's router costs: the sample model scored directly, through the router, through nginx.

Starts two local runtimes on free loopback ports (one counting live metrics, one started with
``--no-metrics``), deploys the sample model with one instance in each, and runs wrk at the same
connection count against, in alternating rounds so that the machine's noise falls on all alike:

* direct -- the metrics runtime's replica, its own azmlinfsrv port;
* router (metrics on) -- that runtime's scoring URI, in front of the same replica;
* router (metrics off) -- the other runtime's scoring URI, in front of its own, identical replica;
* nginx -- Debian's nginx (one worker) as a reverse proxy to the same replica as direct, from a
  generated nginx.conf in a temp dir, bound to 127.0.0.1;
* nginx_unix -- the same nginx to the same replica over the replica's Unix socket, as the router
  reaches it (so the router is compared with nginx on the same transport, too).

Writes the medians and the ratios to bench/results/router_overhead.json, with the CPU time per request
of the process in between: the runtime (router, control plane and all) and nginx's worker.

    .venv/bin/python bench/router_overhead.py [--connections 1 8] [--seconds 10] [--rounds 3]

Targets: router (metrics on) at least level with nginx at 1 and 8 connections (issue 14), and
within 3 % of the router with metrics off.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]
# As tests/conftest.py does: as root, model code would run as the unprivileged user, who cannot
# reach this machine's Python (under /root).
os.environ.setdefault("DEPLOYFLOW_CHILD_USER", "root")

from deployflow.runtime.serving.replicas import free_port  # noqa: E402
from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess, deploy  # noqa: E402

RESULTS = REPO / "bench" / "results" / "router_overhead.json"
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_script(body: str, headers: dict[str, str], directory: Path) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    path = directory / f"wrk-{len(list(directory.iterdir()))}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_wrk(url: str, script: Path, connections: int, seconds: int, proxy: int | None = None) -> dict[str, float]:
    """wrk's figures; with ``proxy`` (the pid of the process in between), its CPU time per request too."""
    cpu_before = cpu_seconds(proxy)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    percentiles = {
        int(p): float(v) * UNITS_MS[unit] for p, v, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    figures = {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": percentiles[50],
        "p99_ms": percentiles[99],
        "non_2xx": int(errors.group(1)) if errors else 0,
        # azmlinfsrv closes every connection after answering, which wrk counts as read errors.
        "socket_errors": sum(map(int, socket_errors.groups())) if socket_errors else 0,
    }
    if proxy is not None:
        # CPU time is what the router's own code costs; a busy shared machine moves it far less than rates.
        figures["proxy_cpu_us_per_request"] = (cpu_seconds(proxy) - cpu_before) / max(requests, 1) * 1e6
    return figures


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of one process and its threads (not its children: the replicas are not counted)."""
    if pid is None:
        return 0.0
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


# user root: as root, nginx's worker would otherwise be nobody, who cannot open the replica's owner-only
# socket (without root the directive is ignored, and the worker is the caller).
NGINX_CONF = """\
daemon off;
user root;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream replica {{ server 127.0.0.1:{upstream}; }}
    upstream replica_unix {{ server unix:{socket}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://replica; proxy_http_version 1.1; }}
    }}
    server {{
        listen 127.0.0.1:{unix_port};
        location / {{ proxy_pass http://replica_unix; proxy_http_version 1.1; }}
    }}
}}
"""
COLUMNS = ("direct", "router", "router_no_metrics", "nginx", "nginx_unix")


def start_nginx(
    directory: Path, upstream_port: int, replica_socket: Path
) -> tuple[subprocess.Popen[bytes], int, int, int]:
    """Debian's nginx in the foreground, as a reverse proxy on two free loopback ports (to the replica's port,
    to its Unix socket): the process, the two ports, and the pid of its one worker (the process that proxies)."""
    directory.mkdir()
    port, unix_port = free_port(), free_port()
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, upstream=upstream_port, port=port, socket=replica_socket,
                                      unix_port=unix_port))  # fmt: skip
    log = open(directory / "stderr.log", "wb")  # noqa: SIM115 - open for the process's lifetime
    process = subprocess.Popen(["nginx", "-p", str(directory), "-e", "stderr", "-c", str(conf)], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port, unix_port, psutil.Process(process.pid).children()[0].pid
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not listen: {(directory / 'stderr.log').read_text()}") from None
            time.sleep(0.05)


def serve_sample(runtime: RuntimeProcess, workers: int) -> tuple[str, str, int]:
    """Deploy the sample model on ``runtime``: its scoring URI, a key, and the replica's own port."""
    with runtime.client() as client:
        client.register_model("diabetes", SAMPLE_MODEL)
        endpoint = client.put_endpoint("bench", description="router overhead benchmark")
        deployment = deploy(client, "bench", "blue", worker_count=workers)
        client.set_traffic("bench", {"blue": 100})
        key = client.keys("bench")["primary_key"]
    return endpoint["scoring_uri"], key, replica_port(deployment["instances"][0]["pid"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="azmlinfsrv worker processes in the replica")
    args = parser.parse_args()
    for tool, package in (("wrk", "wrk"), ("nginx", "nginx")):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install -y {package}")

    body = (SAMPLE_MODEL / "sample-request.json").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        measured = RuntimeProcess(Path(tmp) / "data")
        unmeasured = RuntimeProcess(Path(tmp) / "data-no-metrics", extra_args=["--no-metrics"])
        nginx = None
        try:
            measured.start()
            unmeasured.start()
            router_url, key, direct_port = serve_sample(measured, args.workers)
            no_metrics_url, no_metrics_key, _ = serve_sample(unmeasured, args.workers)
            (socket_path,) = (measured.data_dir / "sockets").glob("*.sock")
            nginx, nginx_port, nginx_unix_port, nginx_worker = start_nginx(
                Path(tmp) / "nginx", direct_port, socket_path
            )
            content = {"Content-Type": "application/json"}
            plain = wrk_script(body, content, Path(tmp))

            def authorized(endpoint_key: str) -> Path:
                return wrk_script(body, {**content, "Authorization": f"Bearer {endpoint_key}"}, Path(tmp))

            targets = {
                "direct": (f"http://127.0.0.1:{direct_port}/score", plain, None),
                "router": (router_url, authorized(key), measured.process.pid),
                "router_no_metrics": (no_metrics_url, authorized(no_metrics_key), unmeasured.process.pid),
                "nginx": (f"http://127.0.0.1:{nginx_port}/score", plain, nginx_worker),
                "nginx_unix": (f"http://127.0.0.1:{nginx_unix_port}/score", plain, nginx_worker),
            }  # fmt: skip
            for url, script, _ in targets.values():  # warm-up
                run_wrk(url, script, max(args.connections), 2)
            rounds: dict[int, dict[str, list[dict[str, float]]]] = {}
            for connections in args.connections:
                rounds[connections] = {name: [] for name in COLUMNS}
                for _ in range(args.rounds):
                    for name in COLUMNS:
                        url, script, proxy = targets[name]
                        rounds[connections][name].append(run_wrk(url, script, connections, args.seconds, proxy))
        finally:
            if nginx is not None:
                nginx.terminate()
                nginx.wait(timeout=10)
            measured.stop()
            unmeasured.stop()

    figures = {
        "tool": "wrk -t1",
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "replica_workers": args.workers,
        "peer": "Debian nginx, worker_processes 1, proxy_pass to the same replica as direct (its port), "
        "and nginx_unix to that replica's Unix socket",
        "by_connections": {str(c): summarise(runs) for c, runs in rounds.items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    for connections, summary in figures["by_connections"].items():
        rates = ", ".join(f"{name} {summary[name]['requests_per_s']:.0f}" for name in COLUMNS)
        ratios = ", ".join(f"{name} {value:.2f}" for name, value in summary["ratios"].items())
        cpu = summary["router_cpu_us_per_request"]
        print(
            f"{connections} connections: req/s {rates}; ratios {ratios}; router CPU per request "
            f"{cpu['metrics_on']:.0f} us with metrics, {cpu['metrics_off']:.0f} us without; "
            f"nginx's worker {summary['nginx_cpu_us_per_request']['tcp']:.0f} us to the port, "
            f"{summary['nginx_cpu_us_per_request']['unix']:.0f} us to the socket"
        )


def summarise(runs: dict[str, list[dict[str, float]]]) -> dict[str, object]:
    """Medians over the rounds, and the request-rate ratios between the columns."""
    median = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    rate = {name: m["requests_per_s"] for name, m in median.items()}
    return {
        **median,
        "ratios": {
            "router/direct": rate["router"] / rate["direct"],
            "nginx/direct": rate["nginx"] / rate["direct"],
            "router_on/router_off": rate["router"] / rate["router_no_metrics"],
            "router/nginx": rate["router"] / rate["nginx"],
            "router/nginx_unix": rate["router"] / rate["nginx_unix"],
        },
        "p50_added_ms": {name: median[name]["p50_ms"] - median["direct"]["p50_ms"] for name in COLUMNS[1:]},
        "router_cpu_us_per_request": {
            "metrics_on": median["router"]["proxy_cpu_us_per_request"],
            "metrics_off": median["router_no_metrics"]["proxy_cpu_us_per_request"],
        },
        "nginx_cpu_us_per_request": {
            "tcp": median["nginx"]["proxy_cpu_us_per_request"],
            "unix": median["nginx_unix"]["proxy_cpu_us_per_request"],
        },
        "all_rounds": runs,
    }


def replica_port(pid: int) -> int:
    for connection in psutil.Process(pid).net_connections("inet"):
        if connection.status == psutil.CONN_LISTEN:
            return connection.laddr.port
    raise RuntimeError(f"replica {pid} listens on no port")


if __name__ == "__main__":
    main()
