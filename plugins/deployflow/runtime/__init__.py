"""The local runtime: Azure ML's online endpoints and jobs, played on one machine.

No Airflow imports here: the runtime is a service of its own (``python -m deployflow.runtime``).
"""
