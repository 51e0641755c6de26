"""Desktop viewer for EG3D generators: orbit, zoom and explore latents in real time.

    python launch_viewer.py                       # the bundled demo model
    python launch_viewer.py --model ffhq512-128.pkl
    python launch_viewer.py --snapshot out.png --frames 30 --script '[{"orbit": [80, 0]}]'

Without a display (a server, SSH without X forwarding) it says so and points to the web demo instead.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: spinning OpenMP threads are 3-6x slower on a shared CPU

import argparse  # noqa: E402
import sys  # noqa: E402

WEB_DEMO_HINT = "use the web demo instead: python app_gradio.py"


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
        print(f"eg3d viewer: missing {', '.join(missing)}: pip install {' '.join(missing)} (or {WEB_DEMO_HINT})",
              file=sys.stderr)
        return 2
    problem = display_problem()
    if problem:
        print(f"eg3d viewer: {problem}; {WEB_DEMO_HINT}", file=sys.stderr)
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
        print(f"eg3d viewer: {e}; {WEB_DEMO_HINT}", file=sys.stderr)
        return 2
    try:
        return app.run()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
