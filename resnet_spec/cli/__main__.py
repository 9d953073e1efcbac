"""``python -m resnet_spec.cli`` (what ``torchrun -m resnet_spec.cli`` runs on every rank)."""

import sys

from . import main

sys.exit(main())
