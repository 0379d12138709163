"""The sample model package, run in its own environment as the runtime runs it.

Training is reproducible (the committed sample response is what train.py produces), and
score.py answers bad input with a 400 and a JSON message instead of crashing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from deployflow.compare import compare_responses
from deployflow.runtime.environments import EnvironmentCache
from tests.runtime.support import ENV_CACHE, SAMPLE_MODEL

pytestmark = pytest.mark.slow

SCORE_IN_PROCESS = """
import json, os, sys
sys.path.insert(0, os.environ["PACKAGE"])
import score
score.init()
results = []
for body in json.loads(sys.stdin.read()):
    answer = score.run(body)
    if hasattr(answer, "status_code"):
        results.append({"status": answer.status_code, "body": json.loads(answer.get_data(as_text=True))})
    else:
        results.append({"status": 200, "body": answer})
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def model_python() -> Path:
    return EnvironmentCache(ENV_CACHE).ensure(SAMPLE_MODEL / "requirements.txt")


def test_training_reproduces_the_committed_sample(model_python: Path, tmp_path: Path) -> None:
    package = shutil.copytree(SAMPLE_MODEL, tmp_path / "diabetes", ignore=shutil.ignore_patterns("model"))
    subprocess.run([str(model_python), str(package / "train.py")], check=True, cwd=package)
    retrained = json.loads((package / "sample-response.json").read_text())
    committed = json.loads((SAMPLE_MODEL / "sample-response.json").read_text())
    assert compare_responses(committed, retrained, rel_tol=1e-9) == []
    assert (package / "sample-request.json").read_text() == (SAMPLE_MODEL / "sample-request.json").read_text()


def test_score_answers_good_input_and_rejects_bad_input_with_400(model_python: Path) -> None:
    sample = (SAMPLE_MODEL / "sample-request.json").read_text()
    bodies = [
        sample,
        "not json",
        json.dumps({"rows": [[0.0] * 10]}),
        json.dumps({"data": [[0.0] * 9]}),
        json.dumps({"data": [[0.0] * 9 + ["x"]]}),
        json.dumps({"data": []}),
    ]
    out = subprocess.run(
        [str(model_python), "-c", SCORE_IN_PROCESS], input=json.dumps(bodies), capture_output=True,
        text=True, check=True, env={"PACKAGE": str(SAMPLE_MODEL), "AZUREML_MODEL_DIR": str(SAMPLE_MODEL)},
    ).stdout  # fmt: skip
    good, *bad = json.loads(out)
    expected = json.loads((SAMPLE_MODEL / "sample-response.json").read_text())
    assert good["status"] == 200 and compare_responses(expected, good["body"]) == []
    assert [b["status"] for b in bad] == [400] * len(bad)
    messages = [b["body"]["error"]["message"] for b in bad]
    assert "not valid JSON" in messages[0]
    assert '"data" key' in messages[1]
    assert "row 0 must be a list of 10 numbers" in messages[2]
    assert "finite number" in messages[3]
    assert "non-empty" in messages[4]
