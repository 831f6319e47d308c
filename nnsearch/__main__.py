"""``python -m nnsearch``: the command line (workers are started this way, with -P)."""

import sys

from nnsearch._command import main

sys.exit(main())
