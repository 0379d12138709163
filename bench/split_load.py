"""A load split into parts, as mapped tasks split it, against the sum of what its parts achieved.

Each part runs in a process of its own (as on a Celery worker), from one LoadPart plan: the same
wall-clock start, its interleaved shard of the schedule, its result serialised as a mapped task
returns it. The merge is the verdict task's. Measured against the built-in fixed-answer server of
loadgen_vs_wrk.py (its own process) on loopback; with several parts on two cores the parts share
the CPU with the server, so the per-part rates stay well below one process's ceiling.

    .venv/bin/python bench/split_load.py [--seconds 4] [--rounds 3]

Figure: merged achieved rate / sum of the parts' achieved rates (target >= 0.95): what the split
loses to parts that start apart or end apart. Also achieved / requested, and whether the merged
histogram equals the parts' added together. Writes bench/results/split_load.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(REPO / "bench"))

from loadgen_vs_wrk import start_server  # noqa: E402

from deployflow.loadtest import LatencyHistogram, RequestSpec, Schedule  # noqa: E402
from deployflow.loadtest.split import LoadPart, merge_parts, plan_parts, run_part  # noqa: E402

RESULTS = REPO / "bench" / "results" / "split_load.json"
TARGET_RATIO = 0.95
CONFIGS = ((2, 4000.0), (4, 2000.0))  # (parts, requests/s per part)
START_LEAD_S = 2.0  # spawned processes import the generator in well under a second
MAX_IN_FLIGHT = 64


def _part(url: str, rate: float, seconds: float, part: dict[str, Any]) -> dict[str, Any]:
    schedule = Schedule.constant(rate, seconds)
    request = RequestSpec(url, method="GET")
    return run_part(request, schedule, LoadPart.from_dict(part), max_in_flight=MAX_IN_FLIGHT).to_dict()


def one_split(url: str, parts: int, rate_per_part: float, seconds: float) -> dict[str, Any]:
    total = parts * rate_per_part
    plan = plan_parts(Schedule.constant(total, seconds), rate_per_part, lead_s=START_LEAD_S)
    assert len(plan) == parts, (len(plan), parts)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(parts) as pool:
        returned = pool.starmap(_part, [(url, total, seconds, p.to_dict()) for p in plan])
    outcome = merge_parts(json.loads(json.dumps(r)) for r in returned)  # through JSON, as through XCom
    merged = outcome.result
    sum_of_parts = sum(p.result.achieved_rate for p in outcome.parts)
    added = LatencyHistogram()
    for p in outcome.parts:
        added.add(p.result.latency)
    latency = merged.latency_ms
    return {
        "parts": parts,
        "requested_per_s": total,
        "achieved_per_s": round(merged.achieved_rate, 1),
        "sum_of_parts_per_s": round(sum_of_parts, 1),
        "split_vs_sum_of_parts": round(merged.achieved_rate / sum_of_parts, 4),
        "achieved_fraction": round(merged.achieved_fraction or 0.0, 4),
        "max_start_late_ms": max(p.start_late_ms for p in outcome.parts),
        "late_parts": [p.part.index for p in outcome.late_parts],
        "generator_fell_behind": merged.generator_fell_behind,
        "errors": merged.error_count,
        "p50_ms": latency.p50,
        "p99_ms": latency.p99,
        "merged_equals_parts_added": merged.latency == added,
        "part_result_bytes": max(len(json.dumps(r)) for r in returned),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server, url = start_server()
    try:
        time.sleep(0.2)
        runs: dict[int, list[dict[str, Any]]] = {parts: [] for parts, _ in CONFIGS}
        for _ in range(args.rounds):  # alternating configurations, so a busy moment hits both alike
            for parts, rate in CONFIGS:
                run = one_split(url, parts, rate, args.seconds)
                print(json.dumps(run), flush=True)
                runs[parts].append(run)
    finally:
        server.terminate()
        server.wait(timeout=10)
    splits = []
    for found in runs.values():
        ordered = sorted(found, key=lambda r: r["split_vs_sum_of_parts"])
        median = ordered[(len(ordered) - 1) // 2]
        splits.append({**median, "rounds": [r["split_vs_sum_of_parts"] for r in found]})
    worst = min(s["split_vs_sum_of_parts"] for s in splits)
    document = {
        "server": "built-in fixed-answer server of loadgen_vs_wrk.py (uvloop, one process)",
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "start_lead_s": START_LEAD_S,
        "max_in_flight_per_part": MAX_IN_FLIGHT,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "splits": splits,
        "target_split_vs_sum_of_parts": TARGET_RATIO,
        "worst_split_vs_sum_of_parts": worst,
        "target_met": worst >= TARGET_RATIO and all(s["merged_equals_parts_added"] for s in splits),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps({k: document[k] for k in ("worst_split_vs_sum_of_parts", "target_met")}))
    if not document["target_met"]:
        sys.exit(f"split load reached {worst:.3f} of the sum of its parts (target {TARGET_RATIO})")


if __name__ == "__main__":
    main()
