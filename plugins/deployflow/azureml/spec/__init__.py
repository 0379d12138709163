"""Azure ML's REST specification, as far as deployflow's requests go: the vendored definitions and
their validator. The contract tests and the dry run check every request body against it."""

from deployflow.azureml.spec.schema import SPEC_FILE, SpecSchema

__all__ = ["SPEC_FILE", "SpecSchema"]
