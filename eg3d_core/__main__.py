"""``python -m eg3d_core ...`` is the ``eg3d`` command."""
import sys

from .cli import main

sys.exit(main())
