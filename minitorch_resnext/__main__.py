"""`python -m minitorch_resnext ...` is the command line (used by `mpiexec`)."""

import sys

from .cli import main

sys.exit(main())
