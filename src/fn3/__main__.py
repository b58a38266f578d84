"""``python -m fn3`` runs the command line (so ``torchrun -m fn3 train ...`` works)."""

import sys

from fn3.cli import main

sys.exit(main())
