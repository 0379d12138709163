"""Batch jobs: the job service, one job's run, worker slots, warm templates and workers, blob I/O."""
