"""Desktop viewer for EG3D generators (GLFW + Dear ImGui + OpenGL).

Pure logic, importable and testable without GL: ``state`` (one typed state object per widget), ``camera_controller``
(orbit / zoom / pan math), ``actions`` (shortcut and script actions), ``requests`` (state -> render request),
``scheduler`` (progressive rendering, newest-wins mailbox), ``renderer`` (the render path with cached tri-planes),
``directions`` (PCA of W, cached), ``worker`` (render and export threads), ``timing``, ``script`` and ``model_info``.
GL and window plumbing: ``window``, ``gl_texture`` and ``app``. The controls live in ``widgets``, one per file.
Entry point: ``launch_viewer.py``.
"""
