"""Desktop viewer for EG3D generators: orbit, zoom and explore latents in real time.

    eg3d-viewer                       # the bundled demo model (from a checkout: python launch_viewer.py)
    eg3d-viewer --model ffhq512-128.pkl
    eg3d-viewer --snapshot out.png --frames 30 --script '[{"orbit": [80, 0]}]'

Without a display (a server, SSH without X forwarding) it says so and points to the web demo instead.
"""
from __future__ import annotations

import os

# Before torch: OpenMP threads that spin while waiting take the CPU from each other and from the UI thread.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def web_demo_command() -> str:
    """A command line that starts the web demo from anywhere: ``eg3d-web`` if it is on PATH, else the ``eg3d-web``
    installed beside this Python (a venv not activated), else this Python running the module."""
    if shutil.which("eg3d-web"):
        return "eg3d-web"
    exe = Path(sys.executable)
    beside = exe.with_name("eg3d-web" + exe.suffix)  # the .exe suffix on Windows, where scripts get one too
    if beside.is_file():
        return _command_line([str(beside)])
    return _command_line([sys.executable, "-m", "eg3d_core.apps.gradio_app"])


def _command_line(args: list[str]) -> str:
    return subprocess.list2cmdline(args) if os.name == "nt" else shlex.join(args)


def web_demo_hint() -> str:
    return f"use the web demo instead: {web_demo_command()}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint: official .pkl, MMagic .pth or our folder (default: demo)")
    p.add_argument("--device", default="cpu", help="torch device for the generator (cpu, cuda, mps)")
    p.add_argument("--cache-dir", default=None, help="where latent directions are cached (default ~/.cache/eg3d_toolkit)")
    p.add_argument("--size", default="1280x800", help="window size WxH")
    p.add_argument("--no-vsync", action="store_true", help="do not wait for the display's refresh")
    p.add_argument("--fps-limit", type=int, default=60, help="UI frame rate cap")
    p.add_argument("--script", default=None, help="JSON list of steps (inline or a file); see viewer/script.py")
    p.add_argument("--snapshot", default=None, metavar="OUT.png",
                   help="run --frames frames and the script, wait for the full-quality frame, save a screenshot, exit")
    p.add_argument("--frames", type=int, default=10, help="with --snapshot: at least this many UI frames")
    p.add_argument("--timeout", type=float, default=600.0, help="with --snapshot: give up (exit 1) after this many seconds")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from eg3d_core.runtime import reuse_freed_memory

    reuse_freed_memory()
    from eg3d_viewer.script import ScriptError, parse_script
    from eg3d_viewer.window import display_problem, missing_packages

    try:
        script = parse_script(args.script) if args.script else []
    except ScriptError as e:
        print(f"eg3d viewer: {e}", file=sys.stderr)
        return 2
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"eg3d viewer: --size must look like 1280x800, got {args.size!r}", file=sys.stderr)
        return 2
    missing = missing_packages()
    if missing:
        print(f"eg3d viewer: missing {', '.join(missing)}: pip install {' '.join(missing)} (or {web_demo_hint()})",
              file=sys.stderr)
        return 2
    problem = display_problem()
    if problem:
        print(f"eg3d viewer: {problem}; {web_demo_hint()}", file=sys.stderr)
        return 2
    from eg3d_viewer.app import AppOptions, ViewerApp
    from eg3d_viewer.directions import default_cache_dir
    from eg3d_viewer.window import WindowError

    options = AppOptions(model=args.model, device=args.device, cache_dir=args.cache_dir or str(default_cache_dir()),
                         width=width, height=height, vsync=not args.no_vsync, fps_limit=args.fps_limit, script=script,
                         snapshot=args.snapshot, frames=args.frames, timeout=args.timeout)
    try:
        app = ViewerApp(options)
    except WindowError as e:
        print(f"eg3d viewer: {e}; {web_demo_hint()}", file=sys.stderr)
        return 2
    try:
        return app.run()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
