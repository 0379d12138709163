"""The Deployments page as HTML: one section per ML platform connection, one card per endpoint.

Plain server-rendered HTML with inline styles (no scripts): the page is shown inside Airflow's UI
as an external view, whose iframe sandbox allows neither pop-ups nor top-level navigation, so
every link opens in place (the page also works on its own at /deployflow/deployments).
"""

from __future__ import annotations

import html

from deployflow.platform.specs import DeploymentState
from deployflow.ui.metrics import LiveNumbers
from deployflow.ui.overview import EndpointView, PlatformView

NONE = "—"
KIND_NAMES = {"deployflow_local": "local runtime", "azure_ml": "Azure Machine Learning"}
STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#1a202c;font-size:14px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;margin:20px 0 8px}h3{font-size:15px;margin:0}
.endpoint{border:1px solid #cbd5e0;border-radius:6px;padding:10px 14px;margin:10px 0}
.uri{font-family:monospace;color:#2d3748}.muted{color:#718096}.error{color:#c53030}
table{border-collapse:collapse;margin:6px 0;width:100%}td,th{padding:3px 8px;border-bottom:1px solid #e2e8f0;
text-align:left;vertical-align:top}th{font-weight:600;color:#4a5568}a{color:#2b6cb0}
.split span{display:inline-block;background:#ebf4ff;border-radius:3px;padding:0 6px;margin-right:4px}
.split span.mirror{background:#f3e8ff}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _split(split: dict[str, int], cls: str) -> str:
    if not split:
        return f'<span class="muted">{NONE}</span>'
    shares = " ".join(f'<span class="{cls}">{_e(name)} {share}%</span>' for name, share in sorted(split.items()))
    return shares


def _live(numbers: LiveNumbers | None) -> list[str]:
    if numbers is None:
        return [NONE, NONE, NONE]
    rate = NONE if numbers.request_rate is None else f"{numbers.request_rate:.1f}/s"
    errors = NONE if numbers.error_rate is None else f"{100 * numbers.error_rate:.2g}%"
    p99 = NONE if numbers.p99_ms is None else f"≤ {numbers.p99_ms:g} ms"
    return [rate, errors, p99]


def _instances(deployment: DeploymentState) -> str:
    if deployment.instance_states:
        counts: dict[str, int] = {}
        for state in deployment.instance_states:
            counts[state] = counts.get(state, 0) + 1
        return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return NONE if deployment.instance_count is None else f"{deployment.instance_count}"


def _deployments(view: EndpointView) -> str:
    if not view.deployments:
        return f'<p class="muted">no deployments{": " + _e(view.error) if view.error else ""}</p>'
    head = "".join(
        f"<th>{h}</th>"
        for h in ("deployment", "model", "resources", "state", "instances", "requests/s", "errors", "p99")
    )
    rows = []
    for d in view.deployments:
        cells = [
            f"<b>{_e(d.name)}</b>",
            _e(d.model or NONE),
            _e(d.resources.describe() if d.resources else NONE),
            _e(d.provisioning_state) + (f'<div class="error">{_e(d.error)}</div>' if d.error else ""),
            _e(_instances(d)),
            *(_e(v) for v in _live(view.live.get(d.name))),
        ]
        rows.append(f'<tr data-deployment="{_e(d.name)}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _runs(view: EndpointView) -> str:
    if not view.runs:
        return '<p class="muted">no real-time deployment runs for this endpoint</p>'
    items = []
    for run in view.runs:
        run_link = f'<a class="run" href="{_e(run.run_url)}">{_e(run.run_id)}</a>'
        links = [f'{run_link} <span class="muted">{_e(run.state)}</span>']
        if run.profile_chart_url:
            links.append(f'<a class="profile" href="{_e(run.profile_chart_url)}">profile chart</a>')
        if run.timeline_url:
            links.append(f'<a class="timeline" href="{_e(run.timeline_url)}">rollout timeline</a>')
        items.append("<li>" + " · ".join(links) + "</li>")
    return f"<ul class='runs'>{''.join(items)}</ul>"


def _endpoint(view: EndpointView) -> str:
    e = view.endpoint
    return (
        f'<div class="endpoint" data-endpoint="{_e(e.name)}"><h3>{_e(e.name)} '
        f'<span class="muted">{_e(e.provisioning_state)}{" · " + _e(e.compute) if e.compute else ""}</span></h3>'
        f'<div>scoring URI <span class="uri">{_e(e.scoring_uri)}</span> '
        f'<span class="muted">({_e(e.auth_mode)} auth; keys are not shown)</span></div>'
        f'<div class="split">traffic {_split(e.traffic, "traffic")} &nbsp; '
        f"mirror {_split(e.mirror_traffic, 'mirror')}</div>"
        f"{_deployments(view)}<div><b>Latest runs</b>{_runs(view)}</div></div>"
    )


# Airflow shows the page in an iframe sandboxed without top navigation or pop-ups, so a plain link to a
# run would open all of Airflow's UI inside the frame. The frame is same-origin: a run link moves Airflow's
# own router instead (a history entry and the popstate its router listens to); without a parent, the link.
OPEN_RUNS_IN_AIRFLOW = """
document.addEventListener("click", function (event) {
  var link = event.target.closest("a.run");
  if (!link || window.parent === window) return;
  try {
    window.parent.history.pushState(null, "", link.getAttribute("href"));
    window.parent.dispatchEvent(new PopStateEvent("popstate", {state: null}));
    event.preventDefault();
  } catch (e) { /* not same-origin: the link opens in the frame */ }
});
"""


def render_page(platforms: list[PlatformView], *, elapsed_ms: float) -> str:
    sections = []
    for p in platforms:
        kind = KIND_NAMES.get(p.conn_type, p.conn_type)
        body = (
            f'<p class="error">{_e(p.error)}</p>'
            if p.error
            else "".join(_endpoint(v) for v in p.endpoints) or '<p class="muted">no endpoints</p>'
        )
        sections.append(f'<section data-connection="{_e(p.conn_id)}"><h2>{_e(p.conn_id)} '
                        f'<span class="muted">({_e(kind)})</span></h2>{body}</section>')  # fmt: skip
    if not sections:
        sections.append('<p class="muted">No ML platform connection (azure_ml, deployflow_local) is configured.</p>')
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Deployments</title>"
        f"<style>{STYLE}</style></head><body><h1>Deployments</h1>{''.join(sections)}"
        f'<p class="muted">Requests, errors and p99 are live traffic since the previous view of this page '
        f"(the first view: since the runtime started); read in {elapsed_ms:.0f} ms.</p>"
        f"<script>{OPEN_RUNS_IN_AIRFLOW}</script></body></html>"
    )
