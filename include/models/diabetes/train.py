"""Train the sample model: ridge regression of diabetes progression on scikit-learn's
bundled diabetes data set (nothing is downloaded).

Writes model/model.joblib, and the sample request and its expected response that the
smoke tests replay. Run it in the model's environment (requirements.txt), e.g.:

    python include/models/diabetes/train.py [--alpha 0.1] [--package-dir DIR]

A different --alpha gives a different model version (the quickstart's second release).
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_ROWS = 3


def train(package_dir: Path = PACKAGE_DIR, alpha: float = 0.1) -> None:
    features, target = load_diabetes(return_X_y=True)
    model = Ridge(alpha=alpha).fit(features, target)
    (package_dir / "model").mkdir(exist_ok=True)
    joblib.dump(model, package_dir / "model" / "model.joblib")

    sample = features[:SAMPLE_ROWS]
    request = {"data": [[round(float(v), 6) for v in row] for row in sample]}
    response = model.predict([row for row in request["data"]]).tolist()
    (package_dir / "sample-request.json").write_text(json.dumps(request, indent=2) + "\n")
    (package_dir / "sample-response.json").write_text(json.dumps(response, indent=2) + "\n")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha", type=float, default=0.1, help="ridge regularisation strength")
    parser.add_argument("--package-dir", type=Path, default=PACKAGE_DIR, help="where model/ and the samples go")
    args = parser.parse_args()
    train(args.package_dir, alpha=args.alpha)
