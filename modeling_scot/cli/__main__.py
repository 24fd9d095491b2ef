"""`python -m modeling_scot.cli ...`: the `scot` command (and what `accelerate launch -m modeling_scot.cli` runs)."""

import sys

from . import main

sys.exit(main())
