"""A real Prometheus server beside the local runtime, scraping its ``/metrics`` every 2 s.

Debian's ``prometheus`` binary (``apt-get install prometheus``); no Python registry ships it.
It listens on loopback only and keeps its data under the given directory
(``.deployflow/prometheus/`` for ``./dev up``). ``python -m deployflow.metrics.prometheus``
writes the configuration and then becomes the server (``exec``), so a pid file written for
the command is the server's own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

BINARY = "prometheus"
INSTALL_HINT = "apt-get install -y prometheus"
LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 9090
SCRAPE_INTERVAL_S = 2
JOB = "deployflow-runtime"
START_TIMEOUT_S = 30


def find_binary() -> str | None:
    return shutil.which(BINARY)


def config_text(target: str, interval_s: int = SCRAPE_INTERVAL_S) -> str:
    """prometheus.yml scraping the runtime's control plane at ``target`` (host:port)."""
    if ":" not in target or not target.rsplit(":", 1)[1].isdigit():
        raise ValueError(f"scrape target must be host:port (the runtime's control plane), not {target!r}")
    return (
        "# Written by deployflow.metrics.prometheus: the local runtime's router metrics.\n"
        "global:\n"
        f"  scrape_interval: {interval_s}s\n"
        f"  evaluation_interval: {interval_s}s\n"
        "scrape_configs:\n"
        f"  - job_name: {JOB}\n"
        "    metrics_path: /metrics\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )


def command(binary: str, data_dir: Path, port: int) -> list[str]:
    return [
        binary,
        f"--config.file={data_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={data_dir / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--storage.tsdb.retention.time=2d",
        "--log.level=warn",
    ]


def prepare(target: str, data_dir: Path, port: int) -> list[str]:
    """Write ``prometheus.yml`` under ``data_dir`` and return the command that serves it."""
    binary = find_binary()
    if binary is None:
        raise FileNotFoundError(f"no prometheus binary on PATH; install Debian's package: {INSTALL_HINT}")
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "prometheus.yml").write_text(config_text(target))
    return command(binary, data_dir, port)


class PrometheusServer:
    """A Prometheus process of the caller's own (tests), started and stopped with it."""

    def __init__(self, target: str, data_dir: Path, port: int) -> None:
        self.target, self.data_dir, self.port = target, data_dir, port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "prometheus.log"

    def start(self) -> None:
        args = prepare(self.target, self.data_dir, self.port)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready within {START_TIMEOUT_S}s:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deployflow.metrics.prometheus", description=__doc__)
    parser.add_argument("--target", required=True, help="the runtime's control plane as host:port")
    parser.add_argument("--data-dir", type=Path, required=True, help="prometheus.yml and the time series go here")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"loopback port (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    try:
        server = prepare(args.target, args.data_dir.resolve(), args.port)
    except (FileNotFoundError, ValueError) as e:
        parser.exit(1, f"{e}\n")
    os.execv(server[0], server)


if __name__ == "__main__":
    main()
