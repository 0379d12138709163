"""deployflow: carry a model through Azure Machine Learning's deployment practice with Airflow."""
