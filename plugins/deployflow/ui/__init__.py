"""The Airflow face of deployflow beyond task states: a Deployments page, task links to reports, report serving.

``plugins/deployflow_ui.py`` registers these with Airflow: the FastAPI app (``app``) is served by
the API server under ``/deployflow``, the page is a nav entry, and the report links are extra
links on the stress test, profile and promote tasks.
"""
