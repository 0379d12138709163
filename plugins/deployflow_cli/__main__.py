"""``python -m deployflow_cli``, the same as the `deployflow` command."""

import sys

from deployflow_cli.main import main

sys.exit(main())
