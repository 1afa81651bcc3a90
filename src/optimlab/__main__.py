"""``python -m optimlab``: the ``optimlab`` command (:mod:`optimlab.cli`)."""

import sys

from optimlab.cli import main

sys.exit(main())
