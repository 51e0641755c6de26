"""Browser demo of an EG3D generator: renders with depth, orbit videos, meshes, and a scriptable API.

    python app_gradio.py [--model PATH] [--host 127.0.0.1] [--port 7860]

Endpoints for ``gradio_client`` (every parameter may be left out: it then takes the UI's default):

* ``/render`` (seed, psi, yaw, pitch, fov, output, cutoff, precision, resolution) -> (picture, depth, info)
* ``/video``  (same, + frames, fps, path) -> MP4
* ``/mesh``   (seed, psi, cutoff, mesh_resolution, level) -> (glb, ply, obj, info)
* ``/invert`` (picture, yaw, pitch, steps, frames, fps) -> (input | fit picture, MP4, glb or None, npz, info)

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
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import inspect  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

import eg3d_core  # noqa: E402
from eg3d_core import visualize  # noqa: E402
from eg3d_core.apps import webapp  # noqa: E402
from eg3d_core.apps.webapp import (  # noqa: E402
    OUTPUTS,
    PATHS,
    PRECISIONS,
    SEED_MAX,
    Caller,
    DemoModel,
    Lane,
    RenderResult,
    label_tiles,
    parse_render,
)
from eg3d_core.errors import EG3DError  # noqa: E402
from eg3d_core.runtime import reuse_freed_memory  # noqa: E402

log = logging.getLogger("eg3d.app")

EXAMPLE_SEEDS = [(0, 0.7), (1, 0.7), (7, 0.5), (42, 1.0)]
# Videos and meshes share one lane (webapp.Lane: one job at a time, per-client shares, a cap on the queued work), the
# camera renders have their own: on a 2-core machine this keeps every core busy while a long job never blocks a camera
# move, and no flood of heavy jobs can refuse a render.
HEAVY = "heavy"
RENDER = "render"
# Request bodies: file uploads (gradio's max_file_size) and everything else (JSON of an API call: a few hundred bytes).
MAX_UPLOAD_BYTES = 10 * 2**20
MAX_BODY_BYTES = 2**20

F = TypeVar("F", bound=Callable[..., Any])

# Small models render 64-128 px pictures: scale them up to the panel instead of showing a stamp in its middle. The
# depth legend sits under the depth pane, next to the info line.
CSS = """
#picture img, #depth img, #invert-fit img { width: 100%; height: 100%; object-fit: contain; }
#depth-legend .legend { display: flex; align-items: center; gap: 0.5em; font-size: 0.85em; }
#depth-legend .bar { flex: 1; height: 12px; border: 1px solid #999; border-radius: 2px; }
#depth-legend .note { font-size: 0.8em; opacity: 0.75; margin-top: 2px; }
#examples .caption-label { font-size: 0.8em; }
"""


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except gr.Error:
        raise
    except EG3DError as e:
        raise gr.Error(str(e), print_exception=False) from None
    except Exception as e:  # noqa: BLE001 - the last line of defence of a public endpoint
        log.exception("request failed")
        raise gr.Error(f"internal error ({type(e).__name__}): {str(e).splitlines()[0] if str(e) else ''}",
                       print_exception=False) from None


def user_errors(fn: F) -> F:
    """Turn every failure of a handler (plain or async) into a one-line gr.Error: the library's user errors
    (EG3DError: bad input, no surface at the level, unwritable output, a busy server) as they are, anything else
    logged with its traceback here and summarised for the user (the browser and API clients never see a traceback)."""
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def waiter(*args: Any, **kwargs: Any) -> Any:
            with _one_line_errors():
                return await fn(*args, **kwargs)
        return waiter  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _one_line_errors():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def caller_of(request: gr.Request | None) -> Caller:
    """The session and peer address of a request (the direct peer: behind a proxy, every user shares its address)."""
    client = getattr(request, "client", None)
    ip = getattr(client, "host", None) or "unknown"
    return Caller(session=getattr(request, "session_hash", None) or f"{ip}/no-session", ip=ip)


async def in_lane(lane: Lane, request: gr.Request | None, cost: float, fn: Callable[..., Any], *args: Any,
                  **kwargs: Any) -> Any:
    """Run fn on ``lane`` for the request's caller (BusyError when its share is taken) and await it on the event loop:
    waiting jobs hold no server thread, and a cancelled request gives its place back."""
    return await asyncio.wrap_future(lane.submit(caller_of(request), cost, fn, *args, **kwargs))


class BodyLimit:
    """ASGI middleware: refuse a request body over ``max_bytes`` (``max_upload`` on gradio's upload route) with 413,
    by its Content-Length before anything is read, or while a body sent without one is read."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES, max_upload: int = MAX_UPLOAD_BYTES) -> None:
        self.app, self.max_bytes, self.max_upload = app, max_bytes, max_upload

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # An upload's multipart envelope (boundaries, headers) adds a little to the file's own size.
        limit = self.max_upload + 2**16 if scope["path"].rstrip("/").endswith("/upload") else self.max_bytes
        message = f"request body too large (at most {limit:,} bytes)"
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            body = message.encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode()),
                                    (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def bounded() -> dict:
            nonlocal received
            msg = await receive()
            received += len(msg.get("body", b""))
            if received > limit:
                raise HTTPException(413, message)  # FastAPI and starlette answer it as a 413
            return msg

        await self.app(scope, bounded, send)


def model_markdown(model: DemoModel) -> str:
    i = model.info()
    return (f"**Model** `{i['preset']}` · {i['image_resolution']}px image from a {i['neural_rendering_resolution']}px "
            f"neural render ({i['sr_module']} super-resolution) · tri-planes {i['triplane']} · z {i['z_dim']} · "
            f"{i['num_ws']} ws · default FOV {i['default_fov']}° · {i['device']}  \n**Source** `{i['source']}`")


def page_url(request: gr.Request | None, fallback: str) -> str:
    """The address the browser used to reach the page (its Host header), for the API snippet; ``fallback`` when the
    request has none or an odd one (the snippet is shown on the page: only a plain host[:port] is trusted)."""
    headers = getattr(request, "headers", None) or {}
    host = headers.get("host", "") if hasattr(headers, "get") else ""
    proto = headers.get("x-forwarded-proto", "http") if hasattr(headers, "get") else "http"
    if not re.fullmatch(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?", host or ""):
        return fallback
    return f"{'https' if proto == 'https' else 'http'}://{host}/"


def limits_markdown(model: DemoModel, url: str = "http://127.0.0.1:7860/") -> str:
    lim, rq, hq = model.limits, webapp.RENDER_QUOTA, webapp.HEAVY_QUOTA
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
| picture → 3D | at most {webapp.WEB_MAX_PIXELS // 1_000_000} MP; steps {lim.invert_steps[0]} … {lim.invert_steps[1]} |
| its yaw, pitch | both blank (estimated) or given; pitch {lim.invert_pitch[0]:g} … {lim.invert_pitch[1]:g} |

Anything else is refused with an error message naming the parameter. Renders run one at a time; videos and meshes
one at a time next to them, so a long job never holds up a camera move. Each browser session and each address gets a
share: {rq.per_session} renders and {hq.per_session} videos or meshes queued or running per session
({rq.per_ip} and {hq.per_ip} per address), and the queued videos and meshes are capped by their estimated work
(frames × pixels, mesh resolution³). A request beyond its share is refused at once with a "busy" message: retry when
one of yours has finished. Request bodies are limited to {MAX_BODY_BYTES // 2**20} MiB.

**Scripting** (`pip install gradio_client`; "Use via API" below lists every parameter):

```python
from gradio_client import Client
c = Client("{url}")
picture, depth, info = c.predict(seed=7, psi=0.7, yaw=30, pitch=-10, output="all", api_name="/render")
mp4 = c.predict(seed=7, frames=60, fps=30, path="turntable", api_name="/video")
glb, ply, obj, info = c.predict(seed=7, mesh_resolution=128, level=10, api_name="/mesh")
from gradio_client import handle_file
both, mp4, glb, npz, info = c.predict(handle_file("car.png"), steps=60, api_name="/invert")  # yaw/pitch blank
```
"""


def depth_legend(depth_range: tuple[float, float] | None) -> str:
    """HTML colour bar of the depth pane: near (warm) to far (cool) over the object, with their distances."""
    if depth_range is None:
        return '<div class="legend">depth: nothing in view (every ray passes through empty space)</div>'
    near, far = depth_range
    stops = ", ".join(f"rgb({r},{g},{b}) {100 * i / 10:.0f}%"
                      for i, (r, g, b) in enumerate(visualize.depth_colormap(np.linspace(1.0, 0.0, 11))))
    return (f'<div class="legend"><span class="near">near {near:.2f}</span>'
            f'<div class="bar" style="background: linear-gradient(to right, {stops})"></div>'
            f'<span class="far">far {far:.2f}</span></div>'
            '<div class="note">distance from the camera (world units); white: empty space</div>')


def render_info(seed: int, yaw: float, pitch: float, res: RenderResult) -> str:
    return (f"seed {seed} · yaw {yaw:g}°, pitch {pitch:g}° · {res.seconds:.2f} s"
            f"{' (tri-planes cached)' if res.cached else ''} · {res.picture.shape[1]}×{res.picture.shape[0]}")


def build_demo(model: DemoModel, lanes: dict[str, Lane] | None = None, url: str = "http://127.0.0.1:7860/"
               ) -> gr.Blocks:
    """The page and its four API endpoints. ``lanes`` run the model work (default: webapp.RENDER_QUOTA and
    HEAVY_QUOTA); the handlers are async, so jobs waiting in a lane hold no thread of the server. ``url``: the
    server's address for the API snippet until a page load tells the address the browser used.

    The page opens rendered: the default view (the model's opening view, ``DemoModel.default_view``) and the example
    thumbnails are rendered here, before the server starts, and sent to every page as it loads."""
    G, lim = model.G, model.limits
    lanes = lanes or default_lanes()
    render_lane, heavy_lane = lanes[RENDER], lanes[HEAVY]
    default_res = G.config.rendering.neural_rendering_resolution
    yaw0, pitch0 = model.default_view()
    fov0 = round(model.defaults.fov, 1)
    first = model.render(parse_render(lim, EXAMPLE_SEEDS[0][0], EXAMPLE_SEEDS[0][1], yaw0, pitch0, fov0))
    thumbnails = [(model.render(parse_render(lim, s, p, yaw0, pitch0, fov0)).picture, f"seed {s} · psi {p:g}")
                  for s, p in EXAMPLE_SEEDS]

    # ------------------------------------------------------------------------------------------------------------
    # Handlers. Events run with preprocess=False: they receive the raw JSON values and validate them themselves, so
    # API callers get the same clear messages as the UI (see webapp.parse_render).

    @user_errors
    async def render(seed: Any, psi: Any = 0.7, yaw: Any = 0.0, pitch: Any = 0.0, fov: Any = None,
                     output: Any = "image", cutoff: Any = None, precision: Any = "fp32", resolution: Any = None,
                     request: gr.Request = None) -> tuple[np.ndarray, np.ndarray, str]:  # type: ignore[assignment]
        req = parse_render(lim, seed, psi, yaw, pitch, fov, output, cutoff, precision, resolution)
        res = await in_lane(render_lane, request, 1.0, model.render, req)
        return res.picture, res.depth, render_info(req.seed, req.yaw, req.pitch, res)

    @user_errors
    async def render_page(seed: Any, psi: Any, yaw: Any, pitch: Any, fov: Any, output: Any, cutoff: Any,
                          precision: Any, resolution: Any,
                          request: gr.Request = None) -> Any:  # type: ignore[assignment]
        """The page's render: ``render`` plus the depth legend, with the tiles of "all" labelled. A slider's number
        box left blank while a value is typed sends None: nothing to render yet (the next keystroke renders)."""
        if any(v is None or (isinstance(v, str) and not v.strip()) for v in (psi, yaw, pitch, fov, cutoff, resolution)):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        # A number typed into a slider's box beyond its range is clamped, as the slider itself does when the box
        # loses focus (without telling the page): the picture then shows what the slider will show.
        psi, cutoff, yaw, pitch, fov, resolution = (
            webapp.clamp(v, bounds) for v, bounds in ((psi, lim.psi), (cutoff, lim.cutoff), (yaw, lim.yaw),
                                                      (pitch, lim.pitch), (fov, lim.fov), (resolution, lim.resolution)))
        req = parse_render(lim, seed, psi, yaw, pitch, fov, output, cutoff, precision, resolution)
        res = await in_lane(render_lane, request, 1.0, model.render, req)
        if req.output == "all":  # the labelled strip takes the depth pane's place too (its depth tile is the same)
            picture, depth = label_tiles(res.picture), gr.update(value=res.depth, visible=False)
        else:
            picture, depth = res.picture, gr.update(value=res.depth, visible=True)
        return picture, depth, render_info(req.seed, req.yaw, req.pitch, res), depth_legend(res.depth_range)

    @user_errors
    async def pick_example(yaw: Any, pitch: Any, fov: Any, output: Any, cutoff: Any, precision: Any, resolution: Any,
                           evt: gr.SelectData, request: gr.Request = None) -> Any:  # type: ignore[assignment]
        """A click on an example thumbnail: its seed and psi, rendered at the page's camera."""
        s, p = EXAMPLE_SEEDS[evt.index if isinstance(evt.index, int) else evt.index[0]]
        shown = await render_page(s, p, yaw, pitch, fov, output, cutoff, precision, resolution, request=request)
        return (s, p, *shown)

    @user_errors
    async def video(seed: Any, psi: Any = 0.7, yaw: Any = 0.0, pitch: Any = 0.0, fov: Any = None,
                    output: Any = "image", cutoff: Any = None, precision: Any = "fp32", resolution: Any = None,
                    frames: Any = 48, fps: Any = 24, path: Any = "orbit",
                    progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio's idiom
                    request: gr.Request = None) -> str:  # type: ignore[assignment]
        req = parse_render(lim, seed, psi, yaw, pitch, fov, output, cutoff, precision, resolution)
        n = webapp.parse_int("frames", frames, lim.frames)
        rate = webapp.parse_int("fps", fps, lim.fps)
        kind = webapp.parse_choice("path", path, PATHS)
        progress(0.0, desc="waiting for the jobs before it")
        return str(await in_lane(heavy_lane, request, webapp.video_cost(G, req, n), model.video, req, n, rate, kind,
                                 progress=lambda f, d: progress(f, desc=d)))

    async def extract(seed: Any, psi: Any, cutoff: Any, mesh_resolution: Any, level: Any, progress: gr.Progress,
                      request: gr.Request | None) -> tuple[webapp.MeshResult, str]:
        s = webapp.parse_int("seed", seed, (0, SEED_MAX))
        p = webapp.parse_float("psi", psi, lim.psi)
        k = None if cutoff is None else webapp.parse_int("cutoff", cutoff, lim.cutoff)
        r = webapp.parse_int("mesh_resolution", mesh_resolution, lim.mesh_resolution)
        lv = webapp.parse_float("level", level, lim.level)
        progress(0.0, desc="waiting for the jobs before it")
        res = await in_lane(heavy_lane, request, webapp.mesh_cost(G, r), model.mesh, s, p, k, r, lv,
                            progress=lambda f, d: progress(f, desc=d))
        info = f"{res.vertices:,} vertices · {res.faces:,} faces · level {lv:g} · {r}³ grid · {res.seconds:.1f} s"
        return res, info

    @user_errors
    async def mesh(seed: Any, psi: Any = 0.7, cutoff: Any = None, mesh_resolution: Any = 128, level: Any = 10.0,
                   progress: gr.Progress = gr.Progress(),  # noqa: B008
                   request: gr.Request = None) -> tuple[str, str, str, str]:  # type: ignore[assignment]
        res, info = await extract(seed, psi, cutoff, mesh_resolution, level, progress, request)
        return str(res.files[".glb"]), str(res.files[".ply"]), str(res.files[".obj"]), info

    @user_errors
    async def mesh_page(seed: Any, psi: Any, cutoff: Any, mesh_resolution: Any, level: Any,
                        progress: gr.Progress = gr.Progress(),  # noqa: B008
                        request: gr.Request = None) -> tuple[Any, Any, Any, str]:  # type: ignore[assignment]
        """The page's button: ``mesh`` shown in the viewer (its preview .glb, colours as rendered), with the download
        boxes shown once there is something to download."""
        res, info = await extract(seed, psi, cutoff, mesh_resolution, level, progress, request)
        return (str(res.preview), gr.update(value=str(res.files[".ply"]), visible=True),
                gr.update(value=str(res.files[".obj"]), visible=True), info)

    async def fit(picture: Any, yaw: Any, pitch: Any, steps: Any, frames: Any, fps: Any, progress: gr.Progress,
                  request: gr.Request | None) -> tuple[webapp.InvertResult, str]:
        req = webapp.parse_invert(lim, picture, yaw, pitch, steps, frames, fps)
        cost = webapp.invert_cost(G, webapp.inversion_settings(req.steps), req.yaw is None, req.frames)
        progress(0.0, desc="waiting for the jobs before it")
        res = await in_lane(heavy_lane, request, cost, model.invert, req, progress=lambda f, d: progress(f, desc=d))
        info = (f"camera yaw {res.yaw:.1f}°, pitch {res.pitch:.1f}° ({'given' if req.yaw is not None else 'estimated'})"
                f" · fit PSNR {res.psnr:.2f} dB · {req.steps} steps · {res.seconds:.1f} s"
                f"{'' if res.mesh else ' · no surface at level 10: no mesh'}")
        return res, info

    @user_errors
    async def invert(picture: Any, yaw: Any = None, pitch: Any = None, steps: Any = 60, frames: Any = 36,
                     fps: Any = 24, progress: gr.Progress = gr.Progress(),  # noqa: B008
                     request: gr.Request = None,  # type: ignore[assignment]
                     ) -> tuple[np.ndarray, str, str | None, str, str]:
        res, info = await fit(picture, yaw, pitch, steps, frames, fps, progress, request)
        return (res.picture, str(res.video), None if res.mesh is None else str(res.mesh[".glb"]), str(res.npz), info)

    @user_errors
    async def invert_from_page(picture: Any, estimate: bool, yaw: Any, pitch: Any, steps: Any, frames: Any, fps: Any,
                               progress: gr.Progress = gr.Progress(),  # noqa: B008
                               request: gr.Request = None,  # type: ignore[assignment]
                               ) -> tuple[np.ndarray, str, Any, str, str]:
        """The page's button: ``invert`` with the camera estimated when the box is ticked; the mesh is shown in the
        viewer as its preview .glb (colours as rendered), seen from the picture's camera."""
        if estimate:
            yaw = pitch = None
        res, info = await fit(picture, yaw, pitch, steps, frames, fps, progress, request)
        view = (math.radians(res.yaw), math.radians(res.pitch))
        shown = (gr.update(value=None) if res.preview is None else
                 gr.update(value=str(res.preview), camera_position=model.preview_camera(view=view)))
        return res.picture, str(res.video), shown, str(res.npz), info

    # ------------------------------------------------------------------------------------------------------------
    # Layout

    with gr.Blocks(title="EG3D demo", analytics_enabled=False, delete_cache=(300, 900)) as demo:
        gr.Markdown("## EG3D: 3D-aware image generation\nPick a seed and a camera; the picture and its depth are "
                    "rendered from the generator's tri-planes. Camera changes reuse the cached tri-planes.")
        gr.Markdown(model_markdown(model), elem_id="model-info")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                with gr.Row():
                    seed = gr.Number(value=0, label="seed", precision=0, minimum=0, maximum=SEED_MAX, scale=3,
                                     elem_id="seed")
                    generate = gr.Button("Generate", variant="primary", scale=2, elem_id="generate")
                # No reset buttons: the page renders on the sliders' input events, which a reset does not send.
                slider: dict[str, Any] = {"buttons": []}
                psi = gr.Slider(*lim.psi, value=EXAMPLE_SEEDS[0][1], step=0.05, label="truncation psi", elem_id="psi",
                                **slider)
                cutoff = gr.Slider(*lim.cutoff, value=lim.cutoff[1], step=1, label="truncation cutoff (ws)",
                                   elem_id="cutoff", **slider)
                yaw = gr.Slider(*lim.yaw, value=yaw0, step=1, label="yaw (degrees from frontal)", elem_id="yaw",
                                **slider)
                pitch = gr.Slider(*lim.pitch, value=pitch0, step=1, label="pitch (degrees from frontal; < 0: above)",
                                  elem_id="pitch", **slider)
                fov = gr.Slider(*lim.fov, value=fov0, step=0.5, label="field of view (degrees)", elem_id="fov",
                                **slider)
                output = gr.Radio(list(OUTPUTS), value="image", label="output")
                with gr.Accordion("rendering", open=False):
                    precision = gr.Radio(list(PRECISIONS), value="fp32", label="precision")
                    resolution = gr.Slider(*lim.resolution, value=default_res, step=8,
                                           label="neural rendering resolution", elem_id="resolution", **slider)
            with gr.Column(scale=2):
                with gr.Row(equal_height=True):
                    picture = gr.Image(label="image", format="png", interactive=False, elem_id="picture", height=384)
                    depth = gr.Image(label="depth (near = warm)", format="png", interactive=False, elem_id="depth",
                                     height=384)
                with gr.Row():
                    info = gr.Markdown(render_info(EXAMPLE_SEEDS[0][0], yaw0, pitch0, first), elem_id="render-info")
                    legend = gr.HTML(depth_legend(first.depth_range), elem_id="depth-legend")
                examples = gr.Gallery(label="examples (click one)", format="png", columns=len(thumbnails),
                                      height=200, allow_preview=False, object_fit="contain", buttons=[],
                                      elem_id="examples", interactive=False)
        with gr.Tab("orbit video"):
            with gr.Row():
                frames = gr.Slider(*lim.frames, value=48, step=1, label="frames")
                fps = gr.Slider(*lim.fps, value=24, step=1, label="fps")
                path = gr.Radio(list(PATHS), value="orbit", label="camera path")
                make_video = gr.Button("Make video", variant="primary", elem_id="make-video")
            movie = gr.Video(label="orbit video", autoplay=True, loop=True, elem_id="video", height=400)
        with gr.Tab("mesh"):
            with gr.Row():
                mesh_res = gr.Slider(*lim.mesh_resolution, value=128, step=16, label="mesh resolution")
                level = gr.Number(value=10.0, label="iso level (raw density)", minimum=lim.level[0], maximum=lim.level[1])
                make_mesh = gr.Button("Extract mesh", variant="primary", elem_id="make-mesh")
            model3d = gr.Model3D(label="mesh preview", height=420, elem_id="model3d",
                                 clear_color=(1.0, 1.0, 1.0, 1.0), camera_position=model.preview_camera())
            with gr.Row():  # shown once a mesh is extracted
                ply = gr.File(label="ply", elem_id="ply", visible=False)
                obj = gr.File(label="obj", elem_id="obj", visible=False)
            mesh_info = gr.Markdown(label="info")
            gr.Markdown("The surface is where the raw density crosses the iso level (10 in the original). If a "
                        "model has no surface there, the error message gives the density range seen: pick a level "
                        "inside it. Downloads: `.ply` and `.obj` with vertex colours; the preview is a `.glb`.")
        with gr.Tab("Your picture -> 3D"):
            gr.Markdown("Upload a picture like the model's training pictures (the same crop, object centred, on the "
                        "model's background); its camera is estimated unless you give yaw and pitch. The fit is "
                        "shown next to your picture, then orbited and meshed.")
            with gr.Row():
                with gr.Column(scale=1, min_width=300):
                    upload = gr.Image(label="your picture", type="filepath", sources=["upload", "clipboard"],
                                      elem_id="invert-input", height=256)
                    # The browser's number fields send 0 when left empty, so the page says "estimate" with a
                    # checkbox; the /invert endpoint keeps blank (None) yaw and pitch for that.
                    inv_estimate = gr.Checkbox(value=True, label="estimate the picture's camera")
                    with gr.Row():
                        inv_yaw = gr.Number(value=0, label="yaw (degrees)", minimum=lim.yaw[0],
                                            maximum=lim.yaw[1], interactive=False)
                        inv_pitch = gr.Number(value=0, label="pitch (degrees)", minimum=lim.invert_pitch[0],
                                              maximum=lim.invert_pitch[1], interactive=False)
                    api_yaw = gr.Number(value=None, visible=False)
                    api_pitch = gr.Number(value=None, visible=False)
                    inv_steps = gr.Slider(*lim.invert_steps, value=60, step=1, label="refinement steps",
                                          elem_id="invert-steps")
                    make_invert = gr.Button("Fit in 3D", variant="primary", elem_id="make-invert")
                with gr.Column(scale=2):
                    fit_picture = gr.Image(label="your picture | fit", format="png", interactive=False,
                                           elem_id="invert-fit", height=256)
                    inv_info = gr.Markdown(label="info", elem_id="invert-info")
            with gr.Row():
                inv_movie = gr.Video(label="orbit of the fit", autoplay=True, loop=True, elem_id="invert-video",
                                     height=320)
                inv_model3d = gr.Model3D(label="mesh of the fit", height=320, elem_id="invert-model3d",
                                         clear_color=(1.0, 1.0, 1.0, 1.0), camera_position=model.preview_camera())
            inv_npz = gr.File(label="latent (.npz: ws, c, yaw, pitch)", elem_id="invert-npz")
            inv_frames = gr.Number(value=36, visible=False, precision=0)
            inv_fps = gr.Number(value=24, visible=False, precision=0)
        with gr.Accordion("limits and API", open=False):
            limits_md = gr.Markdown(limits_markdown(model, url), elem_id="limits")

        # --------------------------------------------------------------------------------------------------------
        # Events

        view = [seed, psi, yaw, pitch, fov, output, cutoff, precision, resolution]
        shown = [picture, depth, info]
        page_shown = [picture, depth, info, legend]
        # No concurrency limit in gradio's queue: every request reaches its handler at once, which admits it to its
        # lane or refuses it (BusyError); the lanes do the queueing, per client (see webapp.Lane).
        quick: dict[str, Any] = {"preprocess": False, "concurrency_id": RENDER, "concurrency_limit": None}
        live: dict[str, Any] = {**quick, "api_visibility": "private", "trigger_mode": "always_last",
                                "show_progress": "minimal"}
        # The status (progress, "Error") shows on the two pictures only: on the one-line info it hid the text.
        on_pictures: dict[str, Any] = {"show_progress_on": [picture, depth]}
        live.update(on_pictures)
        api_render = gr.Button(visible=False)
        api_render.click(render, view, shown, api_name="render", **quick)
        generate.click(render_page, view, page_shown, api_visibility="private", **quick, **on_pictures)
        # Live updates on every user change of a slider -- a drag's steps, arrow keys, each keystroke in its number
        # box -- keeping only the latest of a burst (always_last). The input event is sent after the value is
        # committed; "release" from the number box (on blur) carried the value before the last edit, and arrow keys
        # sent no release at all.
        for control in (psi, cutoff, yaw, pitch, fov, resolution):
            control.input(render_page, view, page_shown, **live)
        seed.submit(render_page, view, page_shown, **live)
        for radio in (output, precision):
            radio.input(render_page, view, page_shown, **live)
        examples.select(pick_example, [yaw, pitch, fov, output, cutoff, precision, resolution],
                        [seed, psi, *page_shown], **{**live, "preprocess": True})
        # The opening pictures, rendered once above, reach each page as it loads: as event outputs their files live in
        # the server's cache like any render's (removed at shutdown; initial values would stay behind).
        demo.load(lambda: (first.picture, first.depth, thumbnails), None, [picture, depth, examples],
                  api_visibility="private", queue=False, show_progress="hidden")

        def api_help(request: gr.Request) -> str:
            return limits_markdown(model, page_url(request, url))

        demo.load(api_help, None, limits_md, api_visibility="private", queue=False)

        heavy: dict[str, Any] = {"preprocess": False, "concurrency_id": HEAVY, "concurrency_limit": None}
        make_video.click(video, [*view, frames, fps, path], movie, api_name="video", **heavy)
        api_mesh = gr.Button(visible=False)
        api_mesh.click(mesh, [seed, psi, cutoff, mesh_res, level], [model3d, ply, obj, mesh_info], api_name="mesh",
                       **heavy)
        make_mesh.click(mesh_page, [seed, psi, cutoff, mesh_res, level], [model3d, ply, obj, mesh_info],
                        api_visibility="private", **heavy)
        inv_outputs = [fit_picture, inv_movie, inv_model3d, inv_npz, inv_info]
        inv_estimate.change(lambda on: [gr.update(interactive=not on)] * 2, inv_estimate, [inv_yaw, inv_pitch],
                            api_visibility="private")
        make_invert.click(invert_from_page, [upload, inv_estimate, inv_yaw, inv_pitch, inv_steps, inv_frames, inv_fps],
                          inv_outputs, api_visibility="private", **heavy)
        api_invert = gr.Button(visible=False)
        api_invert.click(invert, [upload, api_yaw, api_pitch, inv_steps, inv_frames, inv_fps], inv_outputs,
                         api_name="invert", **heavy)
    return demo


def default_lanes(render: webapp.Quota = webapp.RENDER_QUOTA,
                  heavy: webapp.Quota = webapp.HEAVY_QUOTA) -> dict[str, Lane]:
    """The render lane (its jobs may use every core) and the heavy lane (videos and meshes, one thread)."""
    return {RENDER: Lane(RENDER, render, spread=True), HEAVY: Lane(HEAVY, heavy)}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo", help="checkpoint: .pkl, .pth, a save_generator folder, or 'demo'")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cache-size", type=int, default=8, help="tri-plane sets kept (LRU)")
    ap.add_argument("--queue-size", type=int, default=512,
                    help="requests arrived and not yet admitted or refused by their handler (a burst's buffer)")
    args = ap.parse_args(argv)
    # Model work runs on two long-lived threads (webapp.Lane) and their short-lived helpers: two malloc arenas bound
    # how much freed memory all of them keep.
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
    lanes = default_lanes()
    shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    demo = build_demo(model, lanes, url=f"http://{shown_host}:{args.port}/")
    demo.queue(max_size=args.queue_size, default_concurrency_limit=1)
    # Gradio processes at most max_threads events at once: room for every job the lanes may admit, so that a full
    # lane never keeps another lane's requests from reaching their handler.
    admitted = sum(lane.quota.total for lane in lanes.values())
    # SIGTERM (service managers, test harnesses) ends like Ctrl-C: Gradio then closes the server, whose shutdown
    # deletes the files it cached, and the interpreter's exit removes the job folder (atexit).
    signal.signal(signal.SIGTERM, _interrupt)
    demo.launch(server_name=args.host, server_port=args.port, share=False, show_error=True, ssr_mode=False,
                allowed_paths=[str(model.output_dir.root)], footer_links=["api"], css=CSS,
                max_threads=admitted + 32, max_file_size=MAX_UPLOAD_BYTES,
                app_kwargs={"middleware": [Middleware(BodyLimit)]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
