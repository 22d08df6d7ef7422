"""``python -m simbias summary results/fig1a``: see simbias.cli."""

import sys

from .cli import main

sys.exit(main())
