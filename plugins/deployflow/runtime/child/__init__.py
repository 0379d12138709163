"""Scripts that run inside model environments, executed by path with the model's own interpreter.

They import nothing but the standard library and the inference server (a test checks it):
a model environment has none of deployflow's dependencies. The runtime and the validation
step find them through ``CHILD_SCRIPTS``.
"""

from pathlib import Path

CHILD_SCRIPTS = Path(__file__).resolve().parent
