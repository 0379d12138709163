"""Fresh clone to first scored request, with each installer, in the same run.

Clones this repository (its committed HEAD) into a temporary folder and runs `./dev up` there
on free loopback ports, once per installer (`DEPLOYFLOW_INSTALLER=pip` forces venv + pip;
`uv` is the default). Each clone starts with nothing: no .venv, no node_modules, no model
environment. The download caches of pip, uv and npm are the machine's and stay as they are
(warm on a machine that installed once), so the figures compare installers, not networks.

Milestones are read from `./dev up`'s own output as it prints them:

* python ready  the line after the Python bootstrap (npm starts);
* first scored  the DAG's `smoke_test` task succeeded: the test deployment answered the
                sample request (validation scored it in the model's environment before).

After the first scored request the run is stopped and `./dev down` cleans up.

    .venv/bin/python bench/fresh_start.py [--installers pip uv] [--timeout 1200]

Writes bench/results/fresh_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "fresh_start.json"
FIRST_SCORED = re.compile(r"^\s*smoke_test\s+success\b")
PYTHON_READY = re.compile(r"installing npm packages|starting the local runtime")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clone_env(installer: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPLOYFLOW_", "AIRFLOW_", "VIRTUAL_ENV"))}
    env.pop("PYTHONPATH", None)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    env["DEPLOYFLOW_INSTALLER"] = installer
    for name in ("CONTROL", "ROUTER", "AZURITE", "UI"):
        env[f"DEPLOYFLOW_{name}_PORT"] = str(free_port())
    return env


def one_run(installer: str, timeout_s: float) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix=f"fresh-{installer}-"))
    clone = workdir / "deployflow"
    env = clone_env(installer)
    marks: dict[str, float] = {}
    log_lines: list[str] = []
    start = time.monotonic()
    try:
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        marks["cloned"] = time.monotonic() - start
        up = subprocess.Popen(
            ["./dev", "up"],
            cwd=clone,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert up.stdout is not None
        for line in up.stdout:
            log_lines.append(line.rstrip())
            elapsed = time.monotonic() - start
            if "python_ready" not in marks and PYTHON_READY.search(line):
                marks["python_ready"] = elapsed
            if FIRST_SCORED.search(line):
                marks["first_scored"] = elapsed
                break
            if elapsed > timeout_s:
                break
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(timeout=60)
    finally:
        subprocess.run(["./dev", "down"], cwd=clone, env=env, capture_output=True, timeout=120, check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    if "first_scored" not in marks:
        tail = "\n".join(log_lines[-30:])
        raise SystemExit(f"{installer}: no first scored request within {timeout_s:.0f}s; last output:\n{tail}")
    return {"installer": installer, **{k: round(v, 1) for k, v in marks.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--installers", nargs="+", default=["pip", "uv"], choices=["pip", "uv"])
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per run, at most")
    args = parser.parse_args()
    runs = [one_run(installer, args.timeout) for installer in args.installers]
    by_installer = {run["installer"]: run for run in runs}
    figures: dict[str, object] = {"runs": runs}
    if {"pip", "uv"} <= by_installer.keys():
        figures["uv_over_pip_first_scored"] = round(
            float(by_installer["uv"]["first_scored"]) / float(by_installer["pip"]["first_scored"]), 3
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    sys.exit(main())
