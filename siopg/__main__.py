"""`python -m siopg` is the `siopg` command."""

import sys

from siopg.cli import main

sys.exit(main())
