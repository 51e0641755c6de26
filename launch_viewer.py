"""The desktop viewer, started from a checkout: ``python launch_viewer.py [--model PATH]``.

Installed, the same is ``eg3d-viewer``; the viewer itself is the ``eg3d_viewer`` package (the ``viewer/`` folder).
"""
import sys

from eg3d_viewer.launch import main

if __name__ == "__main__":
    sys.exit(main())
