"""How fast and how right the profiler is: a 4-config profile of the sample model on the local runtime.

Runs the profile with the defaults in plugins/deployflow/include/profiling/defaults.json (4 candidates), then
checks the chosen configuration against an exhaustive sweep: the same deployment loaded at
every rate from `--sweep-step` upwards in `--sweep-step` increments until two rates in a row
fail the SLO. Writes bench/results/profile_local.json.

    .venv/bin/python bench/profile_local.py [--sweep-step 10]

Targets (issue 4): the profile finishes in <= 180 s; the chosen configuration's sustainable
rate is within 10 % of the sweep's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]
# As tests/conftest.py does: as root, model code would run as the unprivileged user, who cannot
# reach this machine's Python (under /root).
os.environ.setdefault("DEPLOYFLOW_CHILD_USER", "root")

from deployflow.defaults import PROFILING_DEFAULTS_FILE  # noqa: E402
from deployflow.loadtest import SLO, RequestSpec  # noqa: E402
from deployflow.loadtest.slo import evaluate_slo  # noqa: E402
from deployflow.local.backend import LocalPlatform  # noqa: E402
from deployflow.platform.contract import DEPLOYMENT_HEADER  # noqa: E402
from deployflow.platform.specs import ModelRef  # noqa: E402
from deployflow.profiling import Candidate, PriceTable  # noqa: E402
from deployflow.profiling.measure import open_loop_measure  # noqa: E402
from deployflow.profiling.runner import ProfileSettings, candidate_deployment_spec, run_profile  # noqa: E402
from tests.runtime.support import SAMPLE_MODEL, RuntimeProcess  # noqa: E402

RESULTS = REPO / "bench" / "results" / "profile_local.json"
ENDPOINT = "bench-profile"


def sweep(platform: LocalPlatform, candidate: Candidate, body: bytes, slo: SLO, settings: ProfileSettings, step: float):
    """Every rate in `step` increments until two in a row fail: the highest that passed."""
    name = "sweep"
    platform.begin_create_or_update_deployment(
        candidate_deployment_spec(ENDPOINT, name, ModelRef("diabetes", "1"), None, candidate, settings)
    )
    platform.wait_for_deployment(ENDPOINT, name)
    headers = {**platform.scoring_headers(ENDPOINT), DEPLOYMENT_HEADER: name, "Content-Type": "application/json"}
    request = RequestSpec(platform.get_endpoint(ENDPOINT).scoring_uri, body=body, headers=headers)
    measure = open_loop_measure(request, step_duration_s=settings.step_duration_s, settle_s=settings.settle_s)
    best, failures, rate, points = 0.0, 0, step, []
    try:
        while failures < 2:
            passed = evaluate_slo(slo, measure(rate).result).passed
            points.append({"rate": rate, "passed": passed})
            best, failures = (rate, 0) if passed else (best, failures + 1)
            rate += step
    finally:
        platform.delete_deployment(ENDPOINT, name)
    return best, points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep-step", type=float, default=10.0)
    args = parser.parse_args()
    defaults = json.loads((PROFILING_DEFAULTS_FILE).read_text())
    candidates = [Candidate.from_dict(c) for c in defaults["candidates"]]
    slo, prices = SLO(**defaults["slo"]), PriceTable.from_dict(defaults["prices"])
    settings = ProfileSettings()
    body = (SAMPLE_MODEL / "sample-request.json").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        runtime = RuntimeProcess(Path(tmp) / "data")
        runtime.start()
        try:
            with runtime.client() as client:
                client.register_model("diabetes", SAMPLE_MODEL)
                client.put_endpoint(ENDPOINT, compute="test")
                token = (runtime.data_dir / "admin-token").read_text().strip()
            platform = LocalPlatform(runtime.control_url, token)
            started = time.monotonic()
            run = run_profile(
                platform, endpoint=ENDPOINT, model=ModelRef("diabetes", "1"), package_path=None, request_body=body,
                candidates=candidates, slo=slo, target_rate=defaults["target_rate"], prices=prices,
                headroom=defaults["headroom"], settings=settings,
            )  # fmt: skip
            profile_s = time.monotonic() - started
            chosen_name = run.report["recommendation"]["recommendedConfig"]
            chosen = next(c for c in candidates if c.name == chosen_name)
            found = next(c for c in run.report["candidates"] if c["name"] == chosen_name)[
                "maxSustainableQueriesPerSecond"
            ]
            started = time.monotonic()
            swept, points = sweep(platform, chosen, body, slo, settings, args.sweep_step)
            sweep_s = time.monotonic() - started
        finally:
            runtime.stop()
    figures = {
        "candidates": len(candidates),
        "profile_wall_s": round(profile_s, 1),
        "profile_load_steps": run.report["loadSteps"],
        "step_duration_s": settings.step_duration_s,
        "chosen": chosen_name,
        "chosen_sustainable_rate": found,
        "sweep_sustainable_rate": swept,
        "sweep_step": args.sweep_step,
        "sweep_points": len(points),
        "sweep_wall_s": round(sweep_s, 1),
        "rate_ratio_profile_to_sweep": round(found / swept, 3) if swept else None,
        "per_candidate": {c["name"]: c["maxSustainableQueriesPerSecond"] for c in run.report["candidates"]},
        "recommendation": run.report["recommendation"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "recommendation"}, indent=2))


if __name__ == "__main__":
    main()
