"""`python -m velocior`: the command line."""

import sys

from velocior.cli import main

sys.exit(main())
