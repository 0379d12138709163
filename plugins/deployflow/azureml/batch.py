"""A batch-scoring spec as an Azure ML pipeline job with one ``parallel_run_function`` step. No I/O.

The step runs the package's scoring script (``init()``, ``run(mini_batch)``) on an ``AmlCompute``
cluster over the files of one folder, and appends what ``run()`` returns to
``<output_uri>/predictions.csv``. Parallel jobs do not set ``AZUREML_MODEL_DIR``: the registered
model is a ``custom_model`` input, and its mounted path reaches the script as the
``--model_dir`` program argument (Azure ML's documented pattern; the script reads it with
``argparse.ArgumentParser().parse_known_args()`` in ``init()``).

The step's entry is deployflow's own (``parallel_entry``, copied into the code folder beside the
package's files): it runs the package's script, and a file that fails on its data is scored
alone and recorded under a ``failed_files`` output (``<name>.error.json``) rather than failing its
mini-batch; an empty file is recorded as skipped. Once the job has completed, those records become
the state's ``failed_files``, ``file_errors`` and ``skipped_files`` (the DAG quarantines the failed
ones, as it does for the local runtime), and more failed files than ``error_threshold`` fail the
job, for good (checked when the job ends: the parallel step cannot count rows against files).

An MLflow model folder with no ``scoring_script`` is scored by deployflow's MLflow batch script
(``runtime/child/mlflow_batch.py``, uploaded as ``deployflow_mlflow_batch.py`` beside the entry
script; the folder is the registered ``mlflow_model``, so none of it is sent again as code), in an
environment from the model's requirements with mlflow-skinny and pandas, as Azure ML's own MLflow
batch deployments score such a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.ai.ml import Input, Output
from azure.ai.ml.constants import AssetTypes, InputOutputModes
from azure.ai.ml.entities import Environment, Job, PipelineJob, PipelineJobSettings, RetrySettings
from azure.ai.ml.parallel import RunFunction, parallel_run_function

from deployflow.azureml.entities import BASE_IMAGE
from deployflow.packages import MLFLOW_BATCH_SCRIPT, REQUIREMENTS, ModelPackage, ModelPackageError
from deployflow.platform.batch import PREDICTIONS_FILE, BatchJobSpec, BatchJobState
from deployflow.platform.contract import JOB_CANCELED, JOB_COMPLETED, JOB_FAILED
from deployflow.platform.errors import PlatformError

STEP = "score"
DATA_INPUT = "job_data_path"
MODEL_INPUT = "model"
PREDICTIONS_OUTPUT = "job_output_file"
FAILURES_OUTPUT = "failed_files"
MODEL_ARGUMENT = "--model_dir"
#: deployflow's entry script in the step's code folder (the package's script is its argument)
ENTRY_SCRIPT = "deployflow_parallel_entry.py"
ENTRY_SOURCE = Path(__file__).with_name("parallel_entry.py")
#: deployflow's MLflow batch script in the step's code folder, for an MLflow model that names none
MLFLOW_SCRIPT = "deployflow_mlflow_batch.py"
#: under the output folder, one folder per job of the error reports of the files that failed alone
FAILURES_FOLDER = "_failed_files"
#: the registered model as name:version, for the script's logs; its files are at --model_dir
MODEL_VARIABLE = "DEPLOYFLOW_MODEL"
LOGGING_LEVEL = "INFO"
#: where the job writes, read back by get_batch_job (the service does not echo the spec)
OUTPUT_TAG = "deployflow.output_uri"
FAILURES_TAG = "deployflow.failures_uri"
THRESHOLD_TAG = "deployflow.error_threshold"

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


def build_batch_job(
    spec: BatchJobSpec, *, code_path: Path, conda: dict[str, Any], failures_at: str, mlflow: bool = False
) -> PipelineJob:
    """The pipeline job for a spec; ``code_path`` (the package's code and the entry script) is uploaded
    as the step's code, and the files that fail alone are recorded under ``failures_at``. For an MLflow
    model (``mlflow``) the model is an ``mlflow_model`` input and the script is deployflow's."""
    if not spec.compute:
        raise PlatformError(
            f"batch job {spec.name} has no compute: Azure ML runs parallel steps on an AmlCompute cluster; "
            "set compute (AzureMLPlatform.ensure_batch_cluster creates one)"
        )
    script = MLFLOW_SCRIPT if mlflow else spec.scoring_script
    step = parallel_run_function(
        name=STEP,
        inputs={
            DATA_INPUT: batch_input(spec),
            MODEL_INPUT: Input(
                type=AssetTypes.MLFLOW_MODEL if mlflow else AssetTypes.CUSTOM_MODEL,
                path=f"azureml:{spec.model}",
                mode=InputOutputModes.DOWNLOAD,
            ),
        },
        outputs={
            PREDICTIONS_OUTPUT: Output(
                type=AssetTypes.URI_FILE, path=predictions_uri(spec), mode=InputOutputModes.RW_MOUNT
            ),
            FAILURES_OUTPUT: Output(type=AssetTypes.URI_FOLDER, path=failures_at, mode=InputOutputModes.RW_MOUNT),
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
            code=str(code_path),
            entry_script=ENTRY_SCRIPT,
            environment=Environment(image=BASE_IMAGE, conda_file=conda),
            program_arguments=(
                f"{MODEL_ARGUMENT} ${{{{inputs.{MODEL_INPUT}}}}} --deployflow_script {script} "
                f"--deployflow_failed ${{{{outputs.{FAILURES_OUTPUT}}}}} "
                f"--deployflow_input ${{{{inputs.{DATA_INPUT}}}}}"
            ),
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
        tags={OUTPUT_TAG: spec.output_uri, FAILURES_TAG: failures_at, THRESHOLD_TAG: str(spec.error_threshold)},
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


def failures_uri(spec: BatchJobSpec, token: str) -> str:
    """Where one job's error reports go: a folder of its own under the output folder."""
    return f"{spec.output_uri.rstrip('/')}/{FAILURES_FOLDER}/{token}"


@dataclass(frozen=True)
class BatchCode:
    """What a job's step runs: the package's own batch script, or, when ``mlflow``, deployflow's MLflow
    one (then the code folder holds only the scripts: the model is the step's input)."""

    package: Path
    mlflow: bool


def check_package(spec: BatchJobSpec) -> BatchCode:
    """The package and its batch script (the named one, or the MLflow one), checked before any call."""
    package = Path(spec.package_path).resolve()
    if not (package / REQUIREMENTS).is_file():
        raise PlatformError(f"batch job {spec.name}: model package {package} has no {REQUIREMENTS}")
    try:
        script = ModelPackage(package).batch_script(spec.scoring_script)
    except ModelPackageError as e:
        raise PlatformError(f"batch job {spec.name}: {e}") from e
    return BatchCode(package, mlflow=script == MLFLOW_BATCH_SCRIPT)


def job_status(value: object) -> str:
    """Azure ML's job status in the contract's words: terminal ones normalised, others as Azure says."""
    text = _status_text(value)
    return _STATUSES.get(text.lower(), text)


def batch_job_state(
    job: Job,
    *,
    output_uri: str | None = None,
    file_errors: Mapping[str, str] | None = None,
    skipped_files: Mapping[str, str] | None = None,
) -> BatchJobState:
    """The state of a job as the service returned it; ``file_errors`` are the reports its entry script
    left for the files that failed alone (read once it has completed): more than the job's
    ``error_threshold`` of them turn a completed job into a failed one that no retry would fix."""
    status = job_status(job.status)
    tags = job.tags or {}
    error, retryable = None, True
    if status == JOB_FAILED:
        where = f": {job.studio_url}" if job.studio_url else ""
        error = f"Azure ML job {job.name} ended {_status_text(job.status)}; see its logs in Azure ML studio{where}"
    errors = dict(sorted((file_errors or {}).items()))
    threshold = int(tags.get(THRESHOLD_TAG, "-1"))
    if status == JOB_COMPLETED and threshold != -1 and len(errors) > threshold:
        first = next(iter(errors.items()))
        status, retryable = JOB_FAILED, False
        error = (
            f"Azure ML job {job.name}: {len(errors)} file(s) failed on their data, more than "
            f"error_threshold={threshold}; first: {first[0]}: {first[1]}"
        )
    return BatchJobState(
        job_id=str(job.name),
        status=status,
        output_uri=output_uri or tags.get(OUTPUT_TAG, ""),
        error=error,
        summary={"failed": len(errors), "skipped": len(skipped_files or {})} if file_errors is not None else {},
        failed_files=tuple(errors),
        file_errors=errors,
        skipped_files=dict(sorted((skipped_files or {}).items())),
        retryable=retryable,
    )


def _status_text(value: object) -> str:
    # the SDK hands back str-enums whose str() is "JobStatus.COMPLETED"
    return "Unknown" if value is None else str(getattr(value, "value", value))
