"""Run a package's score.py once, as the scoring server would: ``init()`` then ``run(sample)``.

Executed by path in the model's own environment (which has no deployflow), so it imports
nothing of ours. Prints one JSON line: the stage reached, the answer, the timings.
"""

import json
import os
import sys
import time
import traceback


def main() -> None:
    package, request_file = sys.argv[1], sys.argv[2]
    os.environ.setdefault("AZUREML_MODEL_DIR", package)
    sys.path.insert(0, package)
    report = {"stage": "import"}
    try:
        import score

        report["stage"] = "init"
        started = time.perf_counter()
        score.init()
        report["init_ms"] = (time.perf_counter() - started) * 1000
        report["stage"] = "run"
        with open(request_file) as f:
            raw = f.read()
        started = time.perf_counter()
        answer = score.run(raw)
        report["run_ms"] = (time.perf_counter() - started) * 1000
        if hasattr(answer, "status_code") and hasattr(answer, "get_data"):  # an AMLResponse
            report["status"] = answer.status_code
            text = answer.get_data(as_text=True)
            try:
                report["answer"] = json.loads(text)
            except ValueError:
                report["answer"] = text
        else:
            report["status"] = 200
            report["answer"] = json.loads(json.dumps(answer, default=str))
        report["stage"] = "done"
    except BaseException:  # noqa: B036 - report whatever score.py raised, then fail
        report["error"] = traceback.format_exc(limit=8)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
