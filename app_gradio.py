"""The browser demo (Gradio), started from a checkout: ``python app_gradio.py [--model PATH] [--port N]``.

Installed, the same is ``eg3d-web``; the app itself is ``eg3d_core.apps.gradio_app``.
"""
import sys

from eg3d_core.apps.gradio_app import main

if __name__ == "__main__":
    sys.exit(main())
