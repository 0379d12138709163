"""What the router's JSON nesting scan costs next to parsing the same body with Python's json.

The router scans every JSON scoring body before forwarding it (``deployflow.runtime.serving.nesting``);
the replica then parses it in ``score.py``. For the sample request, a 10,000-row request near the
1.5 MB cap, a body of long strings full of brackets and 100,000 ``[``, this times both (median of
--rounds rounds of best-of-5) and writes the scan's time as a ratio of the parse's, measured in the
same run, to bench/results/json_depth_scan.json.

    .venv/bin/python bench/json_depth_scan.py [--rounds 7]

Target: on ordinary bodies (the sample, the 10,000 rows) the scan costs under a tenth of the parse;
the worst case under the body cap is reported, not judged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from deployflow.runtime.config import RouterLimits  # noqa: E402
from deployflow.runtime.serving.nesting import depth_past  # noqa: E402

RESULTS = REPO / "bench" / "results" / "json_depth_scan.json"
LIMIT = RouterLimits().max_json_depth
BODIES = {
    "sample request": (REPO / "include" / "models" / "diabetes" / "sample-request.json").read_bytes(),
    "10,000 rows of 10 numbers": json.dumps({"data": [[0.0123 * i] * 10 for i in range(10_000)]}).encode(),
    "10,000 strings of 60 brackets": json.dumps({"data": ["[[[[{{" * 10 for _ in range(10_000)]}).encode(),
    "100,000 [ (refused)": b"[" * 100_000,
    # the scan's worst case under the router's 1.5 MB cap: brackets only, so every byte is summed
    "a list of 499,999 empty lists (1.5 MB)": b"[" + b"[]," * 499_998 + b"[]]",
}


def best_of_5(call: Callable[[], object]) -> float:
    times = []
    for _ in range(5):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def parse(body: bytes) -> None:
    try:
        json.loads(body)
    except RecursionError:
        pass  # what score.py meets on the pathological body: the time until it gives up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    figures = []
    for name, body in BODIES.items():
        scans, parses = [], []
        for _ in range(args.rounds):  # alternating, so a busy moment hits both
            scans.append(best_of_5(lambda b=body: depth_past(b, LIMIT)))
            parses.append(best_of_5(lambda b=body: parse(b)))
        scan, parsed = statistics.median(scans), statistics.median(parses)
        figures.append({"body": name, "bytes": len(body), "refused": depth_past(body, LIMIT) is not None,
                        "scan_ms": round(scan * 1e3, 4), "json_loads_ms": round(parsed * 1e3, 4),
                        "scan_over_parse": round(scan / parsed, 3)})  # fmt: skip
    report = {"limit": LIMIT, "rounds": args.rounds, "machine": {"cpus": os.cpu_count(),
              "python": platform.python_version()}, "bodies": figures}  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
