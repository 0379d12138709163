"""``python -m deployflow.local.quickstart``: put a model package behind a local endpoint and score it.

What `./dev up` runs once the runtime is up. It is idempotent: the same package is
registered once, and an endpoint already serving that model version is left as it is.
The endpoint's keys go to a file only the owner can read; they are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from deployflow.local.client import LocalRuntimeClient
from deployflow.packages import ModelPackage
from deployflow.smoke import compare_responses

DEPLOYMENT_COLOURS = ("blue", "green")


def write_private_json(path: Path, document: object) -> None:
    """Write a file readable by its owner only (created 0600 before any byte is written)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(document, f, indent=2)
    tmp.replace(path)


def ensure_serving(client: LocalRuntimeClient, endpoint: str, model: str, *, instances: int) -> str:
    """Make ``endpoint`` serve ``model`` with all its traffic; returns the deployment that serves it."""
    client.put_endpoint(endpoint, description="deployflow quickstart", compute="production")
    current = client.get_endpoint(endpoint)
    deployments = {d["name"]: d for d in client.list_deployments(endpoint)}
    for name, share in current["traffic"].items():
        serving = deployments.get(name)
        healthy = serving is not None and serving["provisioning_state"] == "Succeeded"
        if share == 100 and healthy and serving["model"] == model:
            print(f"endpoint {endpoint}: deployment {name} already serves {model} with 100% of traffic")
            return name
    name = next(c for c in DEPLOYMENT_COLOURS if not current["traffic"].get(c))
    print(f"endpoint {endpoint}: deploying {model} as {name} ({instances} instances); the first build of "
          "the model's environment takes about a minute")  # fmt: skip
    client.put_deployment(endpoint, name, model=model, instance_count=instances,
                          resources={"cpu": 0.5, "memory_gb": 1.0})  # fmt: skip
    state = client.wait_for_deployment(endpoint, name, timeout_s=900)
    if state["provisioning_state"] != "Succeeded":
        raise SystemExit(f"deployment {endpoint}/{name} failed: {state['error']}")
    client.set_traffic(endpoint, traffic={name: 100})
    print(f"endpoint {endpoint}: traffic {{{name}: 100}}")
    for old in deployments:
        if old != name:
            client.delete_deployment(endpoint, old)
            print(f"endpoint {endpoint}: removed the previous deployment {old}")
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployflow.local.quickstart", description=__doc__)
    parser.add_argument("--control-url", required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--package", type=Path, required=True, help="a model package folder")
    parser.add_argument("--endpoint", help="endpoint name (default: the package's folder name)")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--keys-dir", type=Path, required=True, help="where the endpoint's keys file goes")
    args = parser.parse_args(argv)

    package = ModelPackage.load(args.package)
    name = args.endpoint or args.package.resolve().name
    with LocalRuntimeClient(args.control_url, args.token_file.read_text().strip()) as client:
        registered = client.register_model(name, package.path)
        model = f"{registered['name']}:{registered['version']}"
        print(f"model {model} registered from {package.path}")
        ensure_serving(client, name, model, instances=args.instances)
        endpoint = client.get_endpoint(name)
        keys = client.keys(name)
        keys_file = args.keys_dir / f"{name}.json"
        write_private_json(keys_file, {"scoring_uri": endpoint["scoring_uri"], **keys})
        result = client.score(endpoint["scoring_uri"], package.sample_request(), keys["primary_key"])
    problems = compare_responses(package.sample_response(), result.body)
    if result.status_code != 200 or problems:
        print(f"smoke test FAILED: HTTP {result.status_code}", *problems[:10], sep="\n  ", file=sys.stderr)
        return 1
    print(f"smoke test passed: the sample request got the sample response from {result.deployment}")
    print(f"\nEndpoint         {endpoint['scoring_uri']}")
    print(f"Keys             {keys_file} (owner-only)")
    print(f"Try it           curl -s {endpoint['scoring_uri']} -H 'Content-Type: application/json' \\")
    print(f'                   -H "Authorization: Bearer $(jq -r .primary_key {keys_file})" \\')
    print(f"                   -d @{package.path / 'sample-request.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
