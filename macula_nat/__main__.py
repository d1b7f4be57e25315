"""``python -m macula_nat`` is the ``macula-nat`` command."""

import sys

from macula_nat.cli import main

sys.exit(main())
