"""Desktop viewer for EG3D generators (GLFW + Dear ImGui + OpenGL).

Pure logic, importable and testable without GL: ``state`` (one typed state object per widget), ``camera_controller``
(orbit / zoom / pan math), ``actions`` (shortcut and script actions), ``requests`` (state -> render request),
``scheduler`` (progressive rendering, newest-wins mailbox), ``renderer`` (the render path with cached tri-planes),
``directions`` (PCA of W, cached), ``worker`` (render and export threads), ``timing``, ``script`` (parsing and running
scripts), ``report`` (status lines and the timing report) and ``model_info``.
GL and window plumbing: ``window``, ``gl_texture`` and ``app`` (the frame loop), which uses ``events`` (a handler per
worker event type), ``layout`` (panel and view) and ``inputs`` (mouse and shortcuts). The controls live in ``widgets``,
one per file. Entry point: ``launch`` (``eg3d-viewer``; ``launch_viewer.py`` in a checkout).
"""
