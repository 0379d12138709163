"""The Airflow UI face, in a real browser against a real API server: login, Deployments page, report links.

Screenshots go to .cache/ui-screenshots/ (the README's come from there).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.real_airflow import USERNAME
from tests.ui.conftest import DAG_ID, ENDPOINT, SCREENSHOTS

pytestmark = pytest.mark.slow


def extra_links(airflow: Any, run_id: str, task_id: str) -> dict[str, str | None]:
    """A task instance's extra links by name, as the UI reads them."""
    return airflow.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/links")["extra_links"]


def logged_in_page(browser: Any, airflow: Any) -> Any:
    """A browser page logged in through Airflow's own login form, as a person would."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(airflow.base_url + "/")
    page.wait_for_selector("input[name=username]", timeout=30_000)
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", json.loads(airflow.passwords_file.read_text())[USERNAME])
    page.press("input[name=password]", "Enter")
    page.wait_for_url(lambda url: "login" not in url, timeout=30_000)
    return page


def test_the_deployments_page_shows_the_endpoint_its_split_and_its_last_profile(browser, released) -> None:
    airflow, run_id = released["airflow"], released["run_id"]
    with released["runtime"].client() as client:
        (deployment,) = client.get_endpoint(ENDPOINT)["traffic"]
    page = logged_in_page(browser, airflow)

    page.goto(airflow.base_url + "/plugin/deployments")  # the nav entry: Airflow's UI around the plugin's page
    frame = page.frame_locator("iframe")
    card = frame.locator(f"[data-endpoint={ENDPOINT}]")
    card.wait_for(timeout=30_000)
    assert f"{deployment} 100%" in card.locator(".split").inner_text()
    assert "/score" in card.locator(".uri").inner_text()
    assert card.locator(f"[data-deployment={deployment}]").inner_text().count("ready") == 1
    profile = card.locator("a.profile").first
    assert run_id.replace("+", "%2B").replace(":", "%3A") in profile.get_attribute("href")
    assert page.get_by_text("Deployments").first.is_visible()  # the nav entry is there
    page.screenshot(path=str(SCREENSHOTS / "deployments-page.png"))

    profile.click()  # opens in place: Airflow's iframe sandbox allows no pop-ups
    chart = frame.locator("svg polyline.p99")
    chart.first.wait_for(timeout=30_000)
    assert chart.count() >= 1
    page.screenshot(path=str(SCREENSHOTS / "profile-chart-in-airflow.png"))


def test_a_run_link_on_the_deployments_page_opens_the_run_in_airflow_not_inside_the_frame(browser, released) -> None:
    airflow, run_id = released["airflow"], released["run_id"]
    page = logged_in_page(browser, airflow)
    page.goto(airflow.base_url + "/plugin/deployments")
    run = page.frame_locator("iframe").locator(f"[data-endpoint={ENDPOINT}] a.run").first
    run.wait_for(timeout=30_000)
    assert run.inner_text() == run_id
    run.click()
    page.wait_for_url(f"**/dags/{DAG_ID}/runs/**", timeout=30_000)  # Airflow's own page for the run, at the top
    assert quote(run_id, safe="") in page.url
    page.get_by_text(run_id).first.wait_for(timeout=30_000)
    assert page.locator("iframe").count() == 0, "the run page is Airflow's, not the plugin's frame"
    page.screenshot(path=str(SCREENSHOTS / "run-from-deployments-page.png"))


def test_a_tasks_extra_links_open_its_reports_served_by_the_plugin(browser, released) -> None:
    airflow, run_id = released["airflow"], released["run_id"]
    links = extra_links(airflow, run_id, "profile")
    assert set(links) >= {"Profile chart", "Profile report (JSON)"}
    assert links["Profile chart"].startswith(airflow.base_url + "/deployflow/reports/")
    stress = extra_links(airflow, run_id, "stress_test")
    page = logged_in_page(browser, airflow)

    page.goto(stress["Stress test report"])
    report = json.loads(page.locator("body").inner_text())
    assert report["summary"]["passed"] is True and report["summary"]["target"]

    page.goto(f"{airflow.base_url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/profile")  # the task's own page
    page.get_by_text("Details", exact=True).click()
    link = page.locator(f'a[href="{links["Profile chart"]}"]')
    try:
        link.wait_for(timeout=30_000)
    finally:
        page.screenshot(path=str(SCREENSHOTS / "task-instance-links.png"))
    assert "Profile chart" in link.inner_text()
    link.click()
    page.locator("svg polyline.p99").first.wait_for(timeout=30_000)

    timeline = links["Profile chart"].replace("/profile/chart", "/promote/timeline")
    page.goto(timeline)
    assert page.locator("svg rect.window").count() == 4
    assert page.locator("svg .marker.finish").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "rollout-timeline.png"), full_page=True)


def test_the_page_and_the_reports_need_a_logged_in_user(released) -> None:
    airflow, run_id = released["airflow"], released["run_id"]
    chart = extra_links(airflow, run_id, "profile")["Profile chart"]

    for url in (airflow.base_url + "/deployflow/deployments", chart):
        assert httpx.get(url, timeout=30).status_code in (401, 403)
        forged = httpx.get(url, headers={"Authorization": "Bearer not-a-token"}, timeout=30)
        assert forged.status_code in (401, 403)
    page = airflow.client.get("/deployflow/deployments", timeout=30)
    assert page.status_code == 200 and ENDPOINT in page.text
    token = (released["runtime"].data_dir / "admin-token").read_text().strip()
    with released["runtime"].client() as client:
        keys = client.keys(ENDPOINT)
    assert token not in page.text and keys["primary_key"] not in page.text and keys["secondary_key"] not in page.text


def test_a_report_kind_the_task_has_not_is_a_clear_404(released) -> None:
    airflow, run_id = released["airflow"], released["run_id"]
    chart = extra_links(airflow, run_id, "profile")["Profile chart"]

    missing = airflow.client.get(chart.replace("/profile/chart", "/stress_test/chart"), timeout=30)
    unknown = airflow.client.get(chart.replace("/profile/chart", "/profile/secrets"), timeout=30)

    assert missing.status_code == 404 and "has no chart" in missing.json()["detail"]
    assert unknown.status_code == 404 and "one of report, chart" in unknown.json()["detail"]


def test_connection_forms_show_every_field_the_backends_read_and_test_calls_the_platform(released) -> None:
    airflow, runtime = released["airflow"], released["runtime"]

    hooks = {h["connection_type"]: h for h in airflow.client.get("/ui/connections/hook_meta", timeout=30).json()}

    azure = hooks["azure_ml"]
    assert set(azure["extra_fields"]) == {"subscription_id", "resource_group", "workspace_name", "tenant_id"}
    assert all(field["description"] for field in azure["extra_fields"].values())
    assert {"login", "password", "subscription_id", "workspace_name"} <= set(azure["standard_fields"] or {}) | set(
        azure["extra_fields"]
    )
    local = hooks["deployflow_local"]
    assert {"host", "port", "password"} <= {k for k, v in local["standard_fields"].items() if v}
    token = (runtime.data_dir / "admin-token").read_text().strip()
    body = {"connection_id": "probe", "conn_type": "deployflow_local", "host": "127.0.0.1",
            "port": runtime.control_port, "password": token}  # fmt: skip
    assert airflow.request("POST", "/connections/test", json=body)["status"] is True
    wrong = airflow.request("POST", "/connections/test", json={**body, "password": "wrong-token"})
    assert wrong["status"] is False and "wrong-token" not in wrong["message"]
