"""``python -m nnsearch``: the command line (workers are started this way, with -P)."""

import sys

from nnsearch.search.cli import main

sys.exit(main())
