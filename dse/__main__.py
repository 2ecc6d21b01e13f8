"""`python -m dse` runs the CLI."""

import sys

from dse.cli.main import main

sys.exit(main())
