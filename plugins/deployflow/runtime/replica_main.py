"""Start one replica: Azure ML's inference server (azmlinfsrv), bound to loopback.

Runs with the model environment's interpreter, so it imports nothing from deployflow.
azmlinfsrv binds 0.0.0.0 and has no host option; an unauthenticated scoring port must not
be open on every interface, so the bind address is set here before the server starts.
Arguments are azmlinfsrv's own (--entry_script, --model_dir, --port, --worker_count).
"""

import os

from azureml_inference_server_http import amlserver

amlserver.DEFAULT_HOST = os.environ.get("DEPLOYFLOW_REPLICA_HOST", "127.0.0.1")

if __name__ == "__main__":
    amlserver.run()
