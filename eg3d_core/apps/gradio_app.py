"""Browser demo of an EG3D generator: renders with depth, orbit videos, meshes, and a scriptable API.

    python app_gradio.py [--model PATH] [--host 127.0.0.1] [--port 7860]

Endpoints for ``gradio_client`` (every parameter may be left out: it then takes the UI's default):

* ``/render`` (seed, psi, yaw, pitch, fov, output, cutoff, precision, resolution) -> (picture, depth, info)
* ``/video``  (same, + frames, fps, path) -> MP4
* ``/mesh``   (seed, psi, cutoff, mesh_resolution, level) -> (glb, ply, obj, info)

The logic (validation, tri-plane cache, rendering, files) is in ``eg3d_core.apps.webapp``; this file is the UI.
"""
from __future__ import annotations

import os

# Before torch: spinning OpenMP threads waste a shared CPU's cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The demo must start and run without internet: no analytics and no version check (both call home at start-up).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

import eg3d_core  # noqa: E402
from eg3d_core.apps import webapp  # noqa: E402
from eg3d_core.apps.webapp import (  # noqa: E402
    OUTPUTS,
    PATHS,
    PRECISIONS,
    SEED_MAX,
    DemoModel,
    ModelThreads,
    parse_render,
)
from eg3d_core.errors import EG3DError  # noqa: E402
from eg3d_core.runtime import reuse_freed_memory  # noqa: E402

log = logging.getLogger("eg3d.app")

EXAMPLE_SEEDS = [(0, 0.7), (1, 0.7), (7, 0.5), (42, 1.0)]
# Videos and meshes share one concurrency group: on a 2-core machine one heavy job at a time, next to the quick
# renders' own group, keeps every core busy while a long job never blocks a camera move.
HEAVY = "heavy"
RENDER = "render"

F = TypeVar("F", bound=Callable[..., Any])

# Small models render 64-128 px pictures: scale them up to the panel instead of showing a stamp in its middle.
CSS = """
#picture img, #depth img { width: 100%; height: 100%; object-fit: contain; }
"""


def user_errors(fn: F) -> F:
    """Turn every failure into a one-line gr.Error: the library's user errors (EG3DError: bad input, no surface at
    the level, unwritable output) as they are, anything else logged with its traceback here and summarised for the
    user (the browser and API clients never see a traceback)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except EG3DError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - the last line of defence of a public endpoint
            log.exception("request failed")
            raise gr.Error(f"internal error ({type(e).__name__}): {str(e).splitlines()[0] if str(e) else ''}",
                           print_exception=False) from None
    return wrapper  # type: ignore[return-value]


def model_markdown(model: DemoModel) -> str:
    i = model.info()
    return (f"**Model** `{i['preset']}` · {i['image_resolution']}px image from a {i['neural_rendering_resolution']}px "
            f"neural render ({i['sr_module']} super-resolution) · tri-planes {i['triplane']} · z {i['z_dim']} · "
            f"{i['num_ws']} ws · default FOV {i['default_fov']}° · {i['device']}  \n**Source** `{i['source']}`")


def limits_markdown(model: DemoModel) -> str:
    lim = model.limits
    return f"""
| parameter | accepted values |
| --- | --- |
| seed | integer 0 … {SEED_MAX} |
| psi (truncation) | {lim.psi[0]:g} … {lim.psi[1]:g} (1 = none) |
| cutoff | integer {lim.cutoff[0]} … {lim.cutoff[1]}: truncate the first *cutoff* ws ({lim.cutoff[1]} = all) |
| yaw, pitch | degrees from the frontal view: yaw {lim.yaw[0]:g} … {lim.yaw[1]:g}, pitch {lim.pitch[0]:g} … {lim.pitch[1]:g} |
| fov | {lim.fov[0]:g} … {lim.fov[1]:g} degrees (model default {model.defaults.fov:.1f}) |
| output | {", ".join(OUTPUTS)} |
| precision | {", ".join(PRECISIONS)} |
| resolution (neural rendering) | integer {lim.resolution[0]} … {lim.resolution[1]} |
| video frames, fps | {lim.frames[0]} … {lim.frames[1]} frames, {lim.fps[0]} … {lim.fps[1]} fps; path {", ".join(PATHS)} |
| mesh resolution | {lim.mesh_resolution[0]} … {lim.mesh_resolution[1]} (grid points per side) |
| mesh level | {lim.level[0]:g} … {lim.level[1]:g} (raw density; 10 = the original's) |

Anything else is refused with an error message naming the parameter. Requests wait in a queue: renders run one at
a time, videos and meshes one at a time next to them.

**Scripting** (`pip install gradio_client`; "Use via API" below lists every parameter):

```python
from gradio_client import Client
c = Client("http://127.0.0.1:7860/")
picture, depth, info = c.predict(seed=7, psi=0.7, yaw=30, pitch=-10, output="all", api_name="/render")
mp4 = c.predict(seed=7, frames=60, fps=30, path="turntable", api_name="/video")
glb, ply, obj, info = c.predict(seed=7, mesh_resolution=128, level=10, api_name="/mesh")
```
"""


def build_demo(model: DemoModel, threads: ModelThreads | None = None) -> gr.Blocks:
    G, lim = model.G, model.limits
    threads = threads or ModelThreads((RENDER, HEAVY))
    default_res = G.config.rendering.neural_rendering_resolution

    # ------------------------------------------------------------------------------------------------------------
    # Handlers. Events run with preprocess=False: they receive the raw JSON values and validate them themselves, so
    # API callers get the same clear messages as the UI (see webapp.parse_render).

    @user_errors
    def render(seed: Any, psi: Any = 0.7, yaw: Any = 0.0, pitch: Any = 0.0, fov: Any = None, output: Any = "image",
               cutoff: Any = None, precision: Any = "fp32", resolution: Any = None
               ) -> tuple[np.ndarray, np.ndarray, str]:
        req = parse_render(lim, seed, psi, yaw, pitch, fov, output, cutoff, precision, resolution)
        res = threads.run(RENDER, model.render, req)
        info = (f"seed {req.seed} · {res.seconds:.2f} s"
                f"{' (tri-planes cached)' if res.cached else ''} · {res.picture.shape[1]}×{res.picture.shape[0]}")
        return res.picture, res.depth, info

    @user_errors
    def video(seed: Any, psi: Any = 0.7, yaw: Any = 0.0, pitch: Any = 0.0, fov: Any = None, output: Any = "image",
              cutoff: Any = None, precision: Any = "fp32", resolution: Any = None, frames: Any = 48, fps: Any = 24,
              path: Any = "orbit", progress: gr.Progress = gr.Progress()) -> str:  # noqa: B008 - gradio's idiom
        req = parse_render(lim, seed, psi, yaw, pitch, fov, output, cutoff, precision, resolution)
        n = webapp.parse_int("frames", frames, lim.frames)
        rate = webapp.parse_int("fps", fps, lim.fps)
        kind = webapp.parse_choice("path", path, PATHS)
        progress(0.0, desc="rendering")
        return str(threads.run(HEAVY, model.video, req, n, rate, kind, progress=lambda f, d: progress(f, desc=d)))

    @user_errors
    def mesh(seed: Any, psi: Any = 0.7, cutoff: Any = None, mesh_resolution: Any = 128, level: Any = 10.0,
             progress: gr.Progress = gr.Progress()) -> tuple[str, str, str, str]:  # noqa: B008
        s = webapp.parse_int("seed", seed, (0, SEED_MAX))
        p = webapp.parse_float("psi", psi, lim.psi)
        k = None if cutoff is None else webapp.parse_int("cutoff", cutoff, lim.cutoff)
        r = webapp.parse_int("mesh_resolution", mesh_resolution, lim.mesh_resolution)
        lv = webapp.parse_float("level", level, lim.level)
        progress(0.0, desc="extracting the surface")
        res = threads.run(HEAVY, model.mesh, s, p, k, r, lv, progress=lambda f, d: progress(f, desc=d))
        info = f"{res.vertices:,} vertices · {res.faces:,} faces · level {lv:g} · {r}³ grid · {res.seconds:.1f} s"
        return str(res.files[".glb"]), str(res.files[".ply"]), str(res.files[".obj"]), info

    # ------------------------------------------------------------------------------------------------------------
    # Layout

    with gr.Blocks(title="EG3D demo", analytics_enabled=False, delete_cache=(300, 900)) as demo:
        gr.Markdown("## EG3D: 3D-aware image generation\nPick a seed and a camera; the picture and its depth are "
                    "rendered from the generator's tri-planes. Camera changes reuse the cached tri-planes.")
        gr.Markdown(model_markdown(model), elem_id="model-info")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                with gr.Row():
                    seed = gr.Number(value=0, label="seed", precision=0, minimum=0, maximum=SEED_MAX, scale=3)
                    generate = gr.Button("Generate", variant="primary", scale=2, elem_id="generate")
                psi = gr.Slider(*lim.psi, value=0.7, step=0.05, label="truncation psi")
                cutoff = gr.Slider(*lim.cutoff, value=lim.cutoff[1], step=1, label="truncation cutoff (ws)")
                yaw = gr.Slider(*lim.yaw, value=0.0, step=1, label="yaw (degrees from frontal)", elem_id="yaw")
                pitch = gr.Slider(*lim.pitch, value=0.0, step=1, label="pitch (degrees from frontal)")
                fov = gr.Slider(*lim.fov, value=round(model.defaults.fov, 1), step=0.5, label="field of view (degrees)")
                output = gr.Radio(list(OUTPUTS), value="image", label="output")
                with gr.Accordion("rendering", open=False):
                    precision = gr.Radio(list(PRECISIONS), value="fp32", label="precision")
                    resolution = gr.Slider(*lim.resolution, value=default_res, step=8,
                                           label="neural rendering resolution")
            with gr.Column(scale=2):
                with gr.Row(equal_height=True):
                    picture = gr.Image(label="image", format="png", interactive=False, elem_id="picture", height=384)
                    depth = gr.Image(label="depth", format="png", interactive=False, elem_id="depth",
                                     height=384)
                info = gr.Markdown(label="info", elem_id="render-info")
                examples = gr.Examples([list(e) for e in EXAMPLE_SEEDS], inputs=[seed, psi], label="example seeds",
                                       example_labels=[f"seed {s}, psi {p}" for s, p in EXAMPLE_SEEDS])
        with gr.Tab("orbit video"):
            with gr.Row():
                frames = gr.Slider(*lim.frames, value=48, step=1, label="frames")
                fps = gr.Slider(*lim.fps, value=24, step=1, label="fps")
                path = gr.Radio(list(PATHS), value="orbit", label="camera path")
                make_video = gr.Button("Make video", elem_id="make-video")
            movie = gr.Video(label="orbit video", autoplay=True, loop=True, elem_id="video", height=400)
        with gr.Tab("mesh"):
            with gr.Row():
                mesh_res = gr.Slider(*lim.mesh_resolution, value=128, step=16, label="mesh resolution")
                level = gr.Number(value=10.0, label="iso level (raw density)", minimum=lim.level[0], maximum=lim.level[1])
                make_mesh = gr.Button("Extract mesh", elem_id="make-mesh")
            model3d = gr.Model3D(label="mesh preview", height=420, elem_id="model3d",
                                 clear_color=(0.95, 0.95, 0.95, 1.0))
            with gr.Row():
                ply = gr.File(label="ply", elem_id="ply")
                obj = gr.File(label="obj", elem_id="obj")
            mesh_info = gr.Markdown(label="info")
            gr.Markdown("The surface is where the raw density crosses the iso level (10 in the original). If a "
                        "model has no surface there, the error message gives the density range seen: pick a level "
                        "inside it. Downloads: `.ply` and `.obj` with vertex colours; the preview is a `.glb`.")
        with gr.Accordion("limits and API", open=False):
            gr.Markdown(limits_markdown(model))

        # --------------------------------------------------------------------------------------------------------
        # Events

        view = [seed, psi, yaw, pitch, fov, output, cutoff, precision, resolution]
        shown = [picture, depth, info]
        quick: dict[str, Any] = {"preprocess": False, "concurrency_id": RENDER, "concurrency_limit": 1}
        live: dict[str, Any] = {**quick, "api_visibility": "private", "trigger_mode": "always_last",
                                "show_progress": "minimal"}
        generate.click(render, view, shown, api_name="render", **quick)
        # Live updates: on release (not on every drag step) and only the latest of a burst.
        for slider in (psi, cutoff, yaw, pitch, fov, resolution):
            slider.release(render, view, shown, **live)
        seed.submit(render, view, shown, **live)
        for radio in (output, precision):
            radio.input(render, view, shown, **live)
        examples.load_input_event.then(render, view, shown, **live)

        heavy: dict[str, Any] = {"preprocess": False, "concurrency_id": HEAVY, "concurrency_limit": 1}
        make_video.click(video, [*view, frames, fps, path], movie, api_name="video", **heavy)
        make_mesh.click(mesh, [seed, psi, cutoff, mesh_res, level], [model3d, ply, obj, mesh_info], api_name="mesh",
                        **heavy)
    return demo


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo", help="checkpoint: .pkl, .pth, a save_generator folder, or 'demo'")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cache-size", type=int, default=8, help="tri-plane sets kept (LRU)")
    ap.add_argument("--queue-size", type=int, default=64, help="requests waiting before new ones are refused")
    args = ap.parse_args(argv)
    # Model work runs on two long-lived threads (webapp.ModelThreads) and their short-lived helpers: two malloc arenas
    # bound how much freed memory all of them keep.
    reuse_freed_memory(max_arenas=2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per internal start-up request otherwise

    try:
        G = eg3d_core.load_generator(args.model, device=args.device)
    except (EG3DError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model = DemoModel(G, cache_size=args.cache_size)
    log.info("model %s loaded; job files in %s", G.source, model.output_dir.root)
    demo = build_demo(model)
    demo.queue(max_size=args.queue_size, default_concurrency_limit=1)
    # SIGTERM (service managers, test harnesses) ends like Ctrl-C: Gradio then closes the server, whose shutdown
    # deletes the files it cached, and the interpreter's exit removes the job folder (atexit).
    signal.signal(signal.SIGTERM, _interrupt)
    demo.launch(server_name=args.host, server_port=args.port, share=False, show_error=True, ssr_mode=False,
                allowed_paths=[str(model.output_dir.root)], footer_links=["api"], css=CSS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
