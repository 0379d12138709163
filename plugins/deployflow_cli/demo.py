"""``deployflow demo``: what `./dev up` shows once everything runs.

Drives the real-time DAG through Airflow's REST API, as a user would from the UI: a first
release of the sample model, then a second version (retrained with another alpha) rolled out
over it behind the same endpoint. Idempotent: a release the endpoint already serves (or has
moved past) is not run again. Writes the endpoint's keys to an owner-only file and prints the
run's summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from deployflow.local.client import LocalRuntimeClient, RuntimeClientError
from deployflow.packages import ModelPackage
from deployflow.runtime.environments import EnvironmentCache
from deployflow_cli.airflow_api import AirflowApi

BATCH_DAG_ID = "batch_scoring_diabetes"
ENDPOINT = "diabetes"
# Short windows so the demo ends in minutes; the DAG's defaults are for real endpoints.
DEMO_CONF: dict[str, Any] = {
    "endpoint_name": ENDPOINT,
    "stress": {"rate": 50, "duration_s": 10, "resources": {"cpu": 1.0, "memory_gb": 1.0}},
    "candidates": [
        {"name": "cpu0.5-mem1", "resources": {"cpu": 0.5, "memory_gb": 1.0}},
        {"name": "cpu1-mem1", "resources": {"cpu": 1.0, "memory_gb": 1.0}},
    ],
    "target_rate": 100,
    "profile_settings": {"step_duration_s": 1.0, "settle_s": 0.3, "max_steps": 8},
    "rollout_plan": {
        "steps": ["mirror 20% 10s", "traffic 10% 10s", "traffic 50% 10s", "traffic 100%"],
        # The default gates: a p99 ratio is judged only on enough answers and above a floor in ms,
        # so the noise of one shared machine (Airflow, the runtime, two deployments, the probe) passes.
        "bake_s": 10,
    },
}


def second_version(package: Path, workdir: Path) -> Path:
    """The sample retrained with alpha 0.5 in the model's own environment: a second model version."""
    target = workdir / "diabetes-v2"
    if not (target / "sample-response.json").exists():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__"))
        cache = Path(os.environ.get("DEPLOYFLOW_ENV_CACHE", workdir / "envs"))
        python = EnvironmentCache(cache).ensure(target / "requirements.txt")
        train = [str(python), str(target / "train.py"), "--alpha", "0.5", "--package-dir", str(target)]
        subprocess.run(train, check=True)
    return target


def serving_model(client: LocalRuntimeClient) -> str | None:
    """The model version that takes all of the endpoint's traffic now, if any."""
    try:
        traffic = client.get_endpoint(ENDPOINT)["traffic"]
    except RuntimeClientError:
        return None
    live = [name for name, share in traffic.items() if share == 100]
    return client.get_deployment(ENDPOINT, live[0])["model"] if live else None


def write_private_json(path: Path, document: object) -> None:
    """Write a file readable by its owner only (created 0600 before any byte is written)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f, indent=2)
    tmp.replace(path)


def _batch(api: AirflowApi, azurite_port: int, sample: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    from deployflow.azurite import connection_string
    from deployflow.batch.config import load_use_cases
    from deployflow_cli.batch_demo import drop_and_watch

    case = next(c for c in load_use_cases() if c.dag_id == BATCH_DAG_ID)
    with BlobServiceClient.from_connection_string(connection_string(azurite_port)) as storage:
        drop_and_watch(api, case, storage, sample)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deployflow demo", description=__doc__)
    parser.add_argument("--airflow-url", required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--control-url", required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--package", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True, help="where the second version is built")
    parser.add_argument("--keys-dir", type=Path, required=True)
    parser.add_argument("--azurite-port", type=int, required=True)
    parser.add_argument("--batch-sample", type=Path, required=True, help="a CSV to drop into Azurite")
    args = parser.parse_args(argv)

    releases = [("release 1", args.package.resolve()), ("release 2", second_version(args.package, args.workdir))]
    api = AirflowApi(args.airflow_url, args.password_file)
    api.wait_for_dag()
    summary: dict[str, Any] | None = None
    with LocalRuntimeClient(args.control_url, args.token_file.read_text().strip()) as client:
        versions = []
        for _, package in releases:
            ModelPackage.load(package)
            model = client.register_model(ENDPOINT, package)
            versions.append(f"{model['name']}:{model['version']}")
        serving = serving_model(client)
        start = versions.index(serving) + 1 if serving in versions else 0  # never go back to an older release
        for (label, _), version in list(zip(releases, versions, strict=True))[:start]:
            print(f"\n{label}: endpoint {ENDPOINT} already serves {serving}; {version} is not run again")
        for (label, package), version in list(zip(releases, versions, strict=True))[start:]:
            summary = api.run({**DEMO_CONF, "package_path": str(package)}, f"{label} ({version})")
        endpoint = client.get_endpoint(ENDPOINT)
        keys_file = args.keys_dir / f"{ENDPOINT}.json"
        write_private_json(keys_file, {"scoring_uri": endpoint["scoring_uri"], **client.keys(ENDPOINT)})
        serving = serving_model(client)
    if summary:
        print("\nRun summary")
        for key, value in summary.items():
            print(f"  {key:<18} {value}")
    print(f"\nEndpoint         {endpoint['scoring_uri']}   serving {serving}")
    print(f"Keys             {keys_file} (owner-only)")
    print(f"Try it           curl -s {endpoint['scoring_uri']} -H 'Content-Type: application/json' \\")
    print(f'                   -H "Authorization: Bearer $(jq -r .primary_key {keys_file})" \\')
    print(f"                   -d @{args.package.resolve() / 'sample-request.json'}")
    _batch(api, args.azurite_port, args.batch_sample)
    return 0


if __name__ == "__main__":
    sys.exit(main())
