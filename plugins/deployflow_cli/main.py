"""deployflow: look at and call online endpoints on an ML platform connection, in the habits of `az ml`.

    deployflow endpoints list                       every endpoint, its traffic and scoring URI
    deployflow endpoints show NAME                  one endpoint and its deployments (never its keys)
    deployflow keys NAME                            the endpoint's keys (the only command that prints them)
    deployflow invoke NAME --file REQUEST.json [--deployment D]
    deployflow logs NAME DEPLOYMENT [--lines N]
    deployflow traffic NAME [blue=90 green=10] [--mirror green=10]
    deployflow demo ...                             what `./dev up` runs once the services are up

Without --conn-id it talks to the local runtime (DEPLOYFLOW_CONTROL_URL, default
http://127.0.0.1:7070, with the admin token `./dev up` writes to .deployflow/runtime/admin-token);
with --conn-id it uses that Airflow connection (AIRFLOW_CONN_<ID> or the metadata database),
local runtime or Azure ML alike. --json prints JSON only. Exit codes: 0 done, 1 failed, 2 usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deployflow.platform.base import MLPlatform

DEFAULT_CONTROL_URL = "http://127.0.0.1:7070"
DEFAULT_TOKEN_FILE = Path(".deployflow/runtime/admin-token")
SHARE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9-]{0,31})=(?P<percent>\d{1,3})$")


class UsageError(Exception):
    """The command line is wrong: exit 2 with what to write instead."""


class CommandError(Exception):
    """The command could not be done: exit 1 with why."""


def connect(args: argparse.Namespace) -> MLPlatform:
    """The platform the options name: an Airflow connection, or the local runtime's defaults."""
    if args.conn_id:
        # Airflow logs to stdout as it loads; stdout is the command's answer (--json), so its chatter goes to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            from deployflow.hooks.ml_platform import MLPlatformHook

            try:
                return MLPlatformHook(ml_platform_conn_id=args.conn_id).platform
            except Exception as e:  # Airflow raises its own not-found error types by version
                raise CommandError(f"connection {args.conn_id!r}: {e}") from e
    from deployflow.local.backend import LocalPlatform

    url = args.control_url or os.environ.get("DEPLOYFLOW_CONTROL_URL") or DEFAULT_CONTROL_URL
    token_file = Path(args.token_file or os.environ.get("DEPLOYFLOW_TOKEN_FILE") or DEFAULT_TOKEN_FILE)
    if not token_file.is_file():
        raise CommandError(
            f"no admin token at {token_file}: start the local runtime with ./dev up, or give --token-file, "
            "or --conn-id for an Airflow connection (Azure ML needs one)"
        )
    return LocalPlatform(url, token_file.read_text().strip())


def parse_shares(words: Sequence[str], what: str) -> dict[str, int]:
    """``["blue=90", "green=10"]`` as ``{"blue": 90, "green": 10}``; a bad word says what to write."""
    shares: dict[str, int] = {}
    for word in words:
        match = SHARE.match(word)
        if not match or int(match["percent"]) > 100:
            raise UsageError(f"deployflow {what}: {word!r} is not DEPLOYMENT=PERCENT (e.g. blue=90, percent 0 to 100)")
        if match["name"] in shares:
            raise UsageError(f"deployflow {what}: deployment {match['name']} is given twice")
        shares[match["name"]] = int(match["percent"])
    return shares


def _endpoint_row(e: Any) -> dict[str, Any]:
    return {
        "name": e.name,
        "provisioning_state": e.provisioning_state,
        "traffic": e.traffic,
        "mirror_traffic": e.mirror_traffic,
        "compute": e.compute,
        "scoring_uri": e.scoring_uri,
        "tags": e.tags,
    }


def _deployment_row(d: Any) -> dict[str, Any]:
    return {
        "name": d.name,
        "model": d.model,
        "instance_count": d.instance_count,
        "resources": d.resources.describe() if d.resources else None,
        "provisioning_state": d.provisioning_state,
        "error": d.error,
    }


def cmd_endpoints_list(platform: MLPlatform, args: argparse.Namespace) -> Any:
    return [_endpoint_row(e) for e in platform.list_endpoints()]


def cmd_endpoints_show(platform: MLPlatform, args: argparse.Namespace) -> Any:
    endpoint = _endpoint_row(platform.get_endpoint(args.name))
    endpoint["deployments"] = [_deployment_row(d) for d in platform.list_deployments(args.name)]
    return endpoint


def cmd_keys(platform: MLPlatform, args: argparse.Namespace) -> Any:
    keys = platform.get_keys(args.name)
    return {"primary_key": keys.primary_key, "secondary_key": keys.secondary_key}


def cmd_invoke(platform: MLPlatform, args: argparse.Namespace) -> Any:
    try:
        body = Path(args.file).read_bytes()
    except OSError as e:
        raise UsageError(f"deployflow invoke: --file {args.file}: {e.strerror}") from e
    result = platform.invoke(args.name, body, deployment=args.deployment, timeout_s=args.timeout)
    if not result.ok:
        shown = result.body if isinstance(result.body, str) else json.dumps(result.body)
        raise CommandError(f"{args.name} answered HTTP {result.status_code}: {shown[:2000]}")
    return result.body


def cmd_logs(platform: MLPlatform, args: argparse.Namespace) -> Any:
    return platform.get_deployment_logs(args.name, args.deployment, lines=args.lines)


def traffic_change(args: argparse.Namespace) -> tuple[dict[str, int], dict[str, int] | None]:
    """The split and mirror the words ask for, checked before anything is sent."""
    live = parse_shares(args.shares, "traffic")
    mirror = parse_shares([w for w in args.mirror if w], "--mirror") if args.mirror is not None else None
    if live and sum(live.values()) != 100:
        raise UsageError(f"deployflow traffic: the shares add up to {sum(live.values())} %, not 100 %")
    return live, mirror


def cmd_traffic(platform: MLPlatform, args: argparse.Namespace) -> Any:
    live, mirror = traffic_change(args)
    if live or mirror is not None:
        endpoint = platform.set_traffic(args.name, traffic=live or None, mirror_traffic=mirror)
    else:
        endpoint = platform.get_endpoint(args.name)
    return {"name": endpoint.name, "traffic": endpoint.traffic, "mirror_traffic": endpoint.mirror_traffic}


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return "-" if value in (None, "") else str(value)


def render(command: str, result: Any) -> str:
    """What a person reads; --json prints ``result`` itself."""
    if command == "endpoints list":
        return _table(result, ["name", "provisioning_state", "traffic", "mirror_traffic", "scoring_uri"])
    if command == "endpoints show":
        head = [f"{k:<20}{_cell(result[k])}" for k in ("name", "scoring_uri", "provisioning_state", "compute")]
        head += [
            f"{'traffic':<20}{_cell(result['traffic'])}",
            f"{'mirror traffic':<20}{_cell(result['mirror_traffic'])}",
            f"{'tags':<20}{_cell(result['tags'])}",
        ]
        columns = ["name", "model", "instance_count", "resources", "provisioning_state"]
        return "\n".join(head) + "\n\n" + _table(result["deployments"], columns)
    if command in ("keys", "traffic"):
        return "\n".join(f"{k:<20}{_cell(v)}" for k, v in result.items())
    if isinstance(result, str):
        return result.rstrip("\n")
    return json.dumps(result, indent=2)


COMMANDS: dict[str, Callable[[MLPlatform, argparse.Namespace], Any]] = {
    "endpoints list": cmd_endpoints_list,
    "endpoints show": cmd_endpoints_show,
    "keys": cmd_keys,
    "invoke": cmd_invoke,
    "logs": cmd_logs,
    "traffic": cmd_traffic,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--conn-id", help="an Airflow ML platform connection (local runtime or Azure ML)")
    common.add_argument("--control-url", help=f"the local runtime's control URL (default {DEFAULT_CONTROL_URL})")
    common.add_argument("--token-file", help=f"the local runtime's admin token file (default {DEFAULT_TOKEN_FILE})")
    common.add_argument("--json", action="store_true", help="print JSON only")
    parser = _Parser(prog="deployflow", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    endpoints = commands.add_parser("endpoints", help="list or show endpoints")
    which = endpoints.add_subparsers(dest="action", required=True, parser_class=_Parser)
    which.add_parser("list", parents=[common], help="every endpoint")
    which.add_parser("show", parents=[common], help="one endpoint and its deployments").add_argument("name")
    commands.add_parser("keys", parents=[common], help="the endpoint's keys").add_argument("name")
    invoke = commands.add_parser("invoke", parents=[common], help="score a request file")
    invoke.add_argument("name")
    invoke.add_argument("--file", required=True, help="the request body (JSON)")
    invoke.add_argument("--deployment", help="pin the request to one deployment (azureml-model-deployment)")
    invoke.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    logs = commands.add_parser("logs", parents=[common], help="a deployment's server log")
    logs.add_argument("name")
    logs.add_argument("deployment")
    logs.add_argument("--lines", type=int, default=100)
    traffic = commands.add_parser("traffic", parents=[common], help="show or set the traffic split")
    traffic.add_argument("name")
    traffic.add_argument("shares", nargs="*", metavar="DEPLOYMENT=PERCENT")
    traffic.add_argument("--mirror", nargs="*", metavar="DEPLOYMENT=PERCENT", help="mirror share ('' to clear)")
    commands.add_parser("demo", help="the ./dev up demo (its own options: deployflow demo --help)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        from deployflow_cli.demo import main as demo

        return demo(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        command = f"endpoints {args.action}" if args.command == "endpoints" else args.command
        return _run(command, args)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except CommandError as e:
        print(f"deployflow: {e}", file=sys.stderr)
        return 1


def _run(command: str, args: argparse.Namespace) -> int:
    from deployflow.platform.errors import PlatformError

    if command == "traffic":
        traffic_change(args)  # bad words are a usage error, before any connection
    platform = connect(args)
    try:
        result = COMMANDS[command](platform, args)
    except PlatformError as e:
        raise CommandError(str(e)) from e
    except ValueError as e:  # the platform contract refuses a spec before sending it
        raise CommandError(str(e)) from e
    finally:
        platform.close()
    print(json.dumps(result, indent=2) if args.json else render(command, result))
    return 0
