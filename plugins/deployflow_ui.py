"""deployflow's Airflow plugin: the Deployments page (a FastAPI app and a nav entry) and task report links.

A top-level module, so Airflow's plugins manager loads it; the code lives in deployflow.ui.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from deployflow.ui.app import create_app
from deployflow.ui.links import ALL_LINKS
from deployflow.ui.routes import PAGE, PREFIX


class DeployflowUiPlugin(AirflowPlugin):
    name = "deployflow"
    fastapi_apps = [{"app": create_app(), "url_prefix": PREFIX, "name": "deployflow"}]
    external_views = [
        {
            "name": "Deployments",
            "href": PREFIX + PAGE,
            "destination": "nav",
            "url_route": "deployments",
            "nav_top_level": True,
        }
    ]
    operator_extra_links = [link() for link in ALL_LINKS]
