"""``python -m eg3d_core ...`` is the ``eg3d`` command."""
import sys

from .apps.cli import main

sys.exit(main())
