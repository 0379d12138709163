"""A batch-scoring spec as an Azure ML pipeline job with one ``parallel_run_function`` step. No I/O.

The step runs the package's scoring script (``init()``, ``run(mini_batch)``) on an ``AmlCompute``
cluster over the files of one folder, and appends what ``run()`` returns to
``<output_uri>/predictions.csv``. Parallel jobs do not set ``AZUREML_MODEL_DIR``: the registered
model is a ``custom_model`` input, and its mounted path reaches the script as the
``--model_dir`` program argument (Azure ML's documented pattern; the script reads it with
``argparse.ArgumentParser().parse_known_args()`` in ``init()``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from azure.ai.ml import Input, Output
from azure.ai.ml.constants import AssetTypes, InputOutputModes
from azure.ai.ml.entities import Environment, Job, PipelineJob, PipelineJobSettings, RetrySettings
from azure.ai.ml.parallel import RunFunction, parallel_run_function

from deployflow.azureml.entities import BASE_IMAGE
from deployflow.packages import REQUIREMENTS
from deployflow.platform.batch import PREDICTIONS_FILE, BatchJobSpec, BatchJobState
from deployflow.platform.contract import JOB_CANCELED, JOB_COMPLETED, JOB_FAILED
from deployflow.platform.errors import PlatformError

STEP = "score"
DATA_INPUT = "job_data_path"
MODEL_INPUT = "model"
PREDICTIONS_OUTPUT = "job_output_file"
MODEL_ARGUMENT = "--model_dir"
#: the registered model as name:version, for the script's logs; its files are at --model_dir
MODEL_VARIABLE = "DEPLOYFLOW_MODEL"
LOGGING_LEVEL = "INFO"
#: where the job writes, read back by get_batch_job (the service does not echo the spec)
OUTPUT_TAG = "deployflow.output_uri"

# URIs Azure ML mounts itself; anything else must be a local folder, which the SDK uploads
_CLOUD_SCHEMES = ("azureml://", "wasbs://", "wasb://", "abfss://", "https://")
# the SDK treats NotResponding as terminal (RunHistoryConstants.TERMINAL_STATUSES): so does the contract
_STATUSES = {
    "completed": JOB_COMPLETED,
    "failed": JOB_FAILED,
    "notresponding": JOB_FAILED,
    "canceled": JOB_CANCELED,
    "cancelled": JOB_CANCELED,
}


def build_batch_job(spec: BatchJobSpec, *, package_path: Path, conda: dict[str, Any]) -> PipelineJob:
    """The pipeline job for a spec; ``package_path`` is uploaded as the step's code."""
    if not spec.compute:
        raise PlatformError(
            f"batch job {spec.name} has no compute: Azure ML runs parallel steps on an AmlCompute cluster; "
            "set compute (AzureMLPlatform.ensure_batch_cluster creates one)"
        )
    step = parallel_run_function(
        name=STEP,
        inputs={
            DATA_INPUT: batch_input(spec),
            MODEL_INPUT: Input(
                type=AssetTypes.CUSTOM_MODEL, path=f"azureml:{spec.model}", mode=InputOutputModes.DOWNLOAD
            ),
        },
        outputs={
            PREDICTIONS_OUTPUT: Output(
                type=AssetTypes.URI_FILE, path=predictions_uri(spec), mode=InputOutputModes.RW_MOUNT
            )
        },
        input_data=f"${{{{inputs.{DATA_INPUT}}}}}",
        mini_batch_size=str(spec.mini_batch_size),  # a file input: the number of files per run() call
        error_threshold=spec.error_threshold,
        retry_settings=RetrySettings(max_retries=spec.max_retries, timeout=spec.timeout_s),
        instance_count=spec.instance_count,
        max_concurrency_per_instance=spec.max_concurrency_per_instance,
        logging_level=LOGGING_LEVEL,
        environment_variables={**spec.environment_variables, MODEL_VARIABLE: str(spec.model)},
        task=RunFunction(
            code=str(package_path),
            entry_script=spec.scoring_script,
            environment=Environment(image=BASE_IMAGE, conda_file=conda),
            program_arguments=f"{MODEL_ARGUMENT} ${{{{inputs.{MODEL_INPUT}}}}}",
            append_row_to=f"${{{{outputs.{PREDICTIONS_OUTPUT}}}}}",
        ),
        # the same folder holds new files on every run: never reuse an earlier run's output
        is_deterministic=False,
    )
    return PipelineJob(
        display_name=spec.name,
        experiment_name=spec.name,
        jobs={STEP: step},
        settings=PipelineJobSettings(default_compute=spec.compute, force_rerun=True),
        tags={OUTPUT_TAG: spec.output_uri},
    )


def batch_input(spec: BatchJobSpec) -> Input:
    """The folder to score: a cloud URI as it is, a local folder (uploaded by the SDK) as a path."""
    uri = spec.input.uri
    if spec.input.files:
        raise PlatformError(
            f"batch job {spec.name} lists {len(spec.input.files)} file(s) under {uri}: Azure ML batch jobs "
            "score whole folders or blob prefixes only; copy the files to score into a prefix of their own"
        )
    if uri.startswith(_CLOUD_SCHEMES):
        return Input(type=AssetTypes.URI_FOLDER, path=uri, mode=InputOutputModes.RO_MOUNT)
    if "://" in uri and not uri.startswith("file://"):
        raise PlatformError(
            f"batch job {spec.name}: Azure ML cannot read {uri}; give a wasbs://, abfss:// or "
            "azureml://datastores/<name>/paths/<prefix> URI, or a local folder to upload"
        )
    folder = Path(uri.removeprefix("file://")).resolve()
    if not folder.is_dir():
        raise PlatformError(f"batch job {spec.name}: input folder {folder} does not exist")
    return Input(type=AssetTypes.URI_FOLDER, path=str(folder), mode=InputOutputModes.RO_MOUNT)


def predictions_uri(spec: BatchJobSpec) -> str:
    """``<output_uri>/predictions.csv`` on a datastore: the cluster cannot write to a local folder."""
    if not spec.output_uri.startswith("azureml://"):
        raise PlatformError(
            f"batch job {spec.name}: output_uri {spec.output_uri} must be an Azure ML datastore URI "
            "(azureml://datastores/<name>/paths/<prefix>), where the cluster writes its predictions"
        )
    return f"{spec.output_uri.rstrip('/')}/{PREDICTIONS_FILE}"


def check_package(spec: BatchJobSpec) -> Path:
    """The package folder uploaded as the step's code, checked for the script and requirements."""
    package = Path(spec.package_path).resolve()
    for required in (spec.scoring_script, REQUIREMENTS):
        if not (package / required).is_file():
            raise PlatformError(f"batch job {spec.name}: model package {package} has no {required}")
    return package


def job_status(value: object) -> str:
    """Azure ML's job status in the contract's words: terminal ones normalised, others as Azure says."""
    text = _status_text(value)
    return _STATUSES.get(text.lower(), text)


def batch_job_state(job: Job, *, output_uri: str | None = None) -> BatchJobState:
    """The state of a job as the service returned it."""
    status = job_status(job.status)
    error = None
    if status == JOB_FAILED:
        where = f": {job.studio_url}" if job.studio_url else ""
        error = f"Azure ML job {job.name} ended {_status_text(job.status)}; see its logs in Azure ML studio{where}"
    return BatchJobState(
        job_id=str(job.name),
        status=status,
        output_uri=output_uri or (job.tags or {}).get(OUTPUT_TAG, ""),
        error=error,
    )


def _status_text(value: object) -> str:
    # the SDK hands back str-enums whose str() is "JobStatus.COMPLETED"
    return "Unknown" if value is None else str(getattr(value, "value", value))
