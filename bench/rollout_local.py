"""Controlled rollouts under users' traffic on the local runtime: what users saw, and how fast it reacted.

Starts a runtime, serves the sample model (blue) and keeps users' traffic on the endpoint for
the whole run: open-loop, ``--rate`` requests/s, 30 % of them single-row requests (which the
package's sample, three rows, never sends). Then:

1. a good second version rolls out with the default plan (its windows set to ``--window``);
2. a version that fails on single-row requests only — every sample-based check passes —
   rolls out with a plan that sends it users' traffic at once (``traffic 10%``), so its
   failures reach users: how many, and how long from the first one until the old deployment
   has all traffic again (target: one window + 5 s);
3. the good version rolls out ``--healthy`` more times, blue and green in turn, while two
   processes keep both cores busy: how many complete (target: all).

Gates read live metrics from the runtime's ``/metrics``. The router's cost of counting them is
measured by bench/router_overhead.py. Writes bench/results/rollout_local.json.

    .venv/bin/python bench/rollout_local.py [--rate 40] [--window 30] [--healthy 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]
# As tests/conftest.py does: as root, model code would run as the unprivileged user, who cannot
# reach this machine's Python (under /root).
os.environ.setdefault("DEPLOYFLOW_CHILD_USER", "root")

from deployflow.local.backend import LocalPlatform  # noqa: E402
from deployflow.rollout import RolloutState, load_plan  # noqa: E402
from deployflow.rollout.probe import Probe  # noqa: E402
from deployflow.rollout.record import DecisionRecord  # noqa: E402
from deployflow.rollout.runner import Gauges, RolledBack, drive_rollout  # noqa: E402
from deployflow.runtime.environments import EnvironmentCache  # noqa: E402
from tests.runtime.support import ENV_CACHE, SAMPLE_MODEL, RuntimeProcess, deploy  # noqa: E402
from tests.runtime.users import UsersTraffic  # noqa: E402

RESULTS = REPO / "bench" / "results" / "rollout_local.json"
ENDPOINT = "bench-rollout"
SINGLE_ROW_FAULT = (
    "\nimport json as _json\n_run = run\n\ndef run(raw_data):\n"
    "    if len(_json.loads(raw_data)['data']) == 1:\n        raise RuntimeError('fails on single-row requests')\n"
    "    return _run(raw_data)\n"
)


def rollout(platform: LocalPlatform, client, model: str, old: str, new: str, steps: list[str], bake_s: float) -> dict:  # noqa: ANN001
    """Deploy ``new`` at 0 % and drive the plan against users' traffic; what happened, with times."""
    deploy(client, ENDPOINT, new, model=model, instance_count=1, resources={"cpu": 0.5, "memory_gb": 1.0})
    plan = load_plan().override({"steps": steps, "bake_s": bake_s})
    probe = Probe(platform, ENDPOINT, (SAMPLE_MODEL / "sample-request.json").read_bytes(), rate=30)
    record = DecisionRecord(ENDPOINT, new, old, model)
    started_wall, started = time.time(), time.monotonic()
    try:
        drive_rollout(
            platform, endpoint=ENDPOINT, new=new, old=old, state=RolloutState(plan),
            probe=Gauges(probe, live=platform.live_metrics()), record=record,
        )  # fmt: skip
        outcome = "completed"
        platform.delete_deployment(ENDPOINT, old)
    except RolledBack:
        outcome = "rolled back"
    ended_wall = time.time()
    to_full = next((e["t_s"] for e in record.events if e["kind"] == "traffic" and e["traffic"].get(new) == 100), None)
    rollback = next((e for e in record.events if e["kind"] == "rollback"), None)
    return {
        "outcome": outcome,
        "wall_s": round(time.monotonic() - started, 2),
        "start_to_100_percent_s": to_full,
        "sources": [w["source"] for w in record.windows],
        "verdicts": [w["verdict"] for w in record.windows],
        "started": started_wall,
        "ended": ended_wall,
        "rollback_at": (started_wall + rollback["t_s"]) if rollback else None,
    }


def burn(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=40.0, help="users' requests/s")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per gate window")
    parser.add_argument("--healthy", type=int, default=10, help="healthy rollouts under CPU load")
    args = parser.parse_args()
    w = f"{args.window:g}s"
    with tempfile.TemporaryDirectory() as tmp:
        good = shutil.copytree(SAMPLE_MODEL, Path(tmp) / "good")
        python = EnvironmentCache(ENV_CACHE).ensure(good / "requirements.txt")
        subprocess.run([str(python), str(good / "train.py"), "--alpha", "0.5", "--package-dir", str(good)], check=True)
        bad = shutil.copytree(SAMPLE_MODEL, Path(tmp) / "bad")
        (bad / "score.py").write_text((bad / "score.py").read_text() + SINGLE_ROW_FAULT)
        runtime = RuntimeProcess(Path(tmp) / "data")
        runtime.start()
        try:
            with runtime.client() as client:
                v1 = client.register_model("diabetes", SAMPLE_MODEL)
                v2 = client.register_model("diabetes", good)
                faulty = client.register_model("diabetes-single-row", bad)
                client.put_endpoint(ENDPOINT, compute="production")
                deploy(client, ENDPOINT, "blue", model=f"diabetes:{v1['version']}", instance_count=1,
                       resources={"cpu": 0.5, "memory_gb": 1.0})  # fmt: skip
                client.set_traffic(ENDPOINT, {"blue": 100})
                endpoint = client.get_endpoint(ENDPOINT)
                platform = LocalPlatform(runtime.control_url, (runtime.data_dir / "admin-token").read_text().strip())
                users = UsersTraffic(endpoint["scoring_uri"], client.keys(ENDPOINT)["primary_key"], args.rate)
                time.sleep(2)
                default_steps = [f"mirror 20% {w}", f"traffic 10% {w}", f"traffic 50% {w}", "traffic 100%"]
                good_run = rollout(platform, client, f"diabetes:{v2['version']}", "blue", "green", default_steps,
                                   args.window)  # fmt: skip
                good_run["users_failed"] = len(users.failures_between(good_run["started"], good_run["ended"]))
                faulty_steps = [f"traffic 10% {w}", f"traffic 50% {w}", "traffic 100%"]
                bad_run = rollout(platform, client, f"diabetes-single-row:{faulty['version']}", "green", "blue",
                                  faulty_steps, args.window)  # fmt: skip
                failures = users.failures_between(bad_run["started"], bad_run["ended"] + 2)
                bad_run["users_failed"] = len(failures)
                bad_run["users_failed_bound"] = 0.10 * args.rate * args.window
                if failures and bad_run["rollback_at"]:
                    bad_run["first_failure_to_traffic_back_s"] = round(bad_run["rollback_at"] - failures[0], 2)
                old, new = "green", "blue"
                healthy = []
                burners = [multiprocessing.Process(target=burn, args=(3600,), daemon=True) for _ in range(2)]
                for process in burners:
                    process.start()
                try:
                    short = "5s"
                    for _ in range(args.healthy):
                        run = rollout(platform, client, f"diabetes:{v2['version']}", old, new,
                                      [f"mirror 20% {short}", f"traffic 50% {short}", "traffic 100%"], 5)  # fmt: skip
                        run["users_failed"] = len(users.failures_between(run["started"], run["ended"]))
                        healthy.append({k: run[k] for k in ("outcome", "wall_s", "verdicts", "users_failed")})
                        if run["outcome"] == "completed":  # a rolled-back run left the old one serving
                            old, new = new, old
                finally:
                    for process in burners:
                        process.kill()
                users.stop()
                platform.close()
        finally:
            runtime.stop()
    for run in (good_run, bad_run):
        for key in ("started", "ended", "rollback_at"):
            run.pop(key)
    figures = {
        "users_rate": args.rate,
        "window_s": args.window,
        "users_requests": len(users.answers),
        "good_rollout": good_run,
        "faulty_rollout": bad_run,
        "first_failure_to_traffic_back_target_s": args.window + 5,
        "healthy_under_cpu_load": {
            "completed": sum(r["outcome"] == "completed" for r in healthy),
            "of": len(healthy),
            "runs": healthy,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
