"""A controlled rollout under constant live load on the local runtime: failures and timings.

Starts a runtime, serves the sample model (blue), and keeps a constant open-loop load on the
endpoint for the whole run. Then (1) rolls out a good second version with the default plan
(plugins/deployflow/include/rollout/default_plan.json) and (2) rolls out a model that fails one answer in three
after its smoke test, which must roll back by itself. Writes bench/results/rollout_local.json.

    .venv/bin/python bench/rollout_local.py [--rate 120] [--window 30]

Targets (issue 5): 0 failed live requests; rollback complete within one gate window + 5 s
of the failing step's start.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from deployflow.loadtest import RequestSpec, Schedule, run_open_loop  # noqa: E402
from deployflow.local.backend import LocalPlatform  # noqa: E402
from deployflow.rollout import Finish, RollBack, RolloutState, SetTraffic, load_plan  # noqa: E402
from deployflow.rollout.probe import Probe  # noqa: E402
from deployflow.rollout.runner import RolledBack, drive_rollout  # noqa: E402
from deployflow.runtime.environments import EnvironmentCache  # noqa: E402
from tests.runtime.support import ENV_CACHE, SAMPLE_MODEL, RuntimeProcess, deploy  # noqa: E402

RESULTS = REPO / "bench" / "results" / "rollout_local.json"
ENDPOINT = "bench-rollout"
FAULT = (
    "\n_calls = 0\n_run = run\n\ndef run(raw_data):\n    global _calls\n    _calls += 1\n"
    "    if _calls > 8 and _calls % 3 == 0:\n        raise RuntimeError('fails on this input')\n"
    "    return _run(raw_data)\n"
)


def packages(workdir: Path) -> tuple[Path, Path]:
    """A good second version (retrained, alpha 0.5) and a faulty one (the sample, failing 1 in 3)."""
    good = shutil.copytree(SAMPLE_MODEL, workdir / "good")
    python = EnvironmentCache(ENV_CACHE).ensure(good / "requirements.txt")
    subprocess.run([str(python), str(good / "train.py"), "--alpha", "0.5", "--package-dir", str(good)], check=True)
    bad = shutil.copytree(SAMPLE_MODEL, workdir / "bad")
    (bad / "score.py").write_text((bad / "score.py").read_text() + FAULT)
    return good, bad


def rollout(platform: LocalPlatform, client, model: str, old: str, new: str, window: float) -> dict:  # noqa: ANN001
    """Deploy ``new`` at 0 %, run the default plan with ``window``-second steps; timings of each change."""
    deploy(client, ENDPOINT, new, model=model, instance_count=2, resources={"cpu": 0.5, "memory_gb": 1.0})
    plan = load_plan().override({"steps": [_with_window(s, window) for s in load_plan().to_text()]})
    events: list[tuple[str, float]] = []

    def note(action, at: float) -> None:  # noqa: ANN001
        if isinstance(action, (SetTraffic, RollBack, Finish)):
            events.append((type(action).__name__, at))

    probe = Probe(platform, ENDPOINT, (SAMPLE_MODEL / "sample-request.json").read_bytes(), rate=50)
    started = time.monotonic()
    try:
        progress = drive_rollout(
            platform, endpoint=ENDPOINT, new=new, old=old, state=RolloutState(plan), probe=probe, on_action=note
        )
        outcome, decisions = "completed", progress.decisions()
    except RolledBack as e:
        outcome, decisions = "rolled back", [d.to_dict() for d in e.state.history]
    ended = time.monotonic()
    result = {"outcome": outcome, "decisions": decisions, "wall_s": round(ended - started, 2)}
    if outcome == "completed":
        platform.delete_deployment(ENDPOINT, old)
        result["start_to_100_percent_s"] = round(events[-1][1] - started, 2)
    else:
        failing_step_start = [at for kind, at in events if kind == "SetTraffic"][-1]
        rollback_at = next(at for kind, at in events if kind == "RollBack")
        result["failing_step_start_to_traffic_restored_s"] = round(ended - failing_step_start, 2)
        result["verdict_to_traffic_restored_s"] = round(ended - rollback_at, 2)
    result["traffic_after"] = platform.get_endpoint(ENDPOINT).traffic
    return result


def _with_window(step: str, window: float) -> str:
    words = step.split()
    return " ".join(words[:2] + [f"{window:g}s"]) if len(words) > 2 else step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=120.0, help="constant live load, requests/s")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per gate window")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        good, bad = packages(Path(tmp))
        runtime = RuntimeProcess(Path(tmp) / "data")
        runtime.start()
        try:
            with runtime.client() as client:
                v1 = client.register_model("diabetes", SAMPLE_MODEL)
                v2 = client.register_model("diabetes", good)
                faulty = client.register_model("diabetes-faulty", bad)
                client.put_endpoint(ENDPOINT, compute="production")
                deploy(client, ENDPOINT, "blue", model=f"diabetes:{v1['version']}", instance_count=2,
                       resources={"cpu": 0.5, "memory_gb": 1.0})  # fmt: skip
                client.set_traffic(ENDPOINT, {"blue": 100})
                endpoint = client.get_endpoint(ENDPOINT)
                key = client.keys(ENDPOINT)["primary_key"]
                platform = LocalPlatform(runtime.control_url, (runtime.data_dir / "admin-token").read_text().strip())
                live = RequestSpec(
                    endpoint["scoring_uri"],
                    body=(SAMPLE_MODEL / "sample-request.json").read_bytes(),
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                )
                budget_s = 4 * args.window + 90  # the four gate windows of both rollouts, and their deployments
                load: dict = {}
                thread = threading.Thread(
                    target=lambda: load.update(result=run_open_loop(live, Schedule.constant(args.rate, budget_s)))
                )
                thread.start()
                time.sleep(2)
                good_run = rollout(platform, client, f"diabetes:{v2['version']}", "blue", "green", args.window)
                bad_run = rollout(
                    platform, client, f"diabetes-faulty:{faulty['version']}", "green", "blue", args.window
                )
                thread.join()
                live_result = load["result"]
        finally:
            runtime.stop()
    figures = {
        "live_rate": args.rate,
        "window_s": args.window,
        "live_requests": live_result.scheduled,
        "live_ok": live_result.ok,
        "live_failed": live_result.scheduled - live_result.ok,
        "live_errors": live_result.errors,
        "live_p99_ms": live_result.latency.percentiles().p99,
        "good_rollout": good_run,
        "faulty_rollout": bad_run,
        "rollback_target_s": args.window + 5,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
