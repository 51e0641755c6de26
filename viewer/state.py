"""The viewer's state: one small typed object per widget, all owned by the UI thread.

Widgets read and write exactly one of these. The render worker never sees them: the UI thread turns them into an
immutable ``RenderRequest`` (``viewer.requests``), so a widget edit can never race with a render in progress.
Fields that ask for an action (``load_requested``, ``save_requested`` ...) are set by a widget, a shortcut or a script
and consumed (reset) by the app in the same frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eg3d_core.settings import NOISE_MODES as NOISE_MODES
from eg3d_core.settings import PRECISIONS as PRECISIONS

if TYPE_CHECKING:  # scripts are validated before torch is imported (a fast answer for a bad command line)
    from eg3d_core.cameras import CameraDefaults

VIEWS = ("image", "raw", "depth", "side by side")
VIEW_LABELS = {"image": "Final image", "raw": "Raw neural render", "depth": "Depth (colour-mapped)",
               "side by side": "Side by side", "target": "Your picture", "fit": "Fit so far"}
ZOOM_MODES = ("fov", "radius")
MESH_RESOLUTIONS = (64, 128, 256, 384, 512)
MESH_FORMATS = (".ply", ".obj", ".glb")
PLANE_SCALES = (1, 2, 4)


@dataclass
class CameraState:
    """Rendering camera: yaw/pitch are offsets (radians) from the frontal view, as in ``eg3d_core.cameras.camera``."""

    yaw: float = 0.0
    pitch: float = 0.0
    radius: float = 2.7
    fov: float = 18.837
    pivot: tuple[float, float, float] = (0.0, 0.0, 0.2)
    zoom_mode: str = "fov"
    mode: str = "orbit"  # arrow keys: "orbit" the look-at point or "fly" (turn in place); P toggles
    orbit_animation: bool = False
    orbit_phase: float = 0.0

    @classmethod
    def from_defaults(cls, defaults: CameraDefaults) -> CameraState:
        yaw, pitch = defaults.view  # the model's opening view
        return cls(yaw=yaw, pitch=pitch, radius=defaults.radius, fov=defaults.fov, pivot=tuple(defaults.pivot))


@dataclass
class ConditioningState:
    """Camera pose fed to the mapping network (separate from the rendering camera, as in the original)."""

    yaw: float = 0.0
    pitch: float = 0.0


@dataclass(frozen=True)
class CustomLatent:
    """ws that replace seed A: a picture's inversion or a ``.npz`` loaded from disk. Compared by ``digest`` (``ws``,
    a [1, num_ws, w_dim] tensor, has no plain equality), so render requests of the same latent compare equal."""

    name: str
    digest: str
    ws: Any = field(compare=False, repr=False)


@dataclass
class LatentState:
    """Seed A (or a custom latent in its place), optional interpolation towards seed B, and the animation that walks
    seeds A -> B -> B+1 ... Changing seed A goes back from a custom latent to seeds."""

    custom: CustomLatent | None = None
    seed: int = 0
    seed_b: int = 1
    mix: float = 0.0
    animate: bool = False
    speed: float = 0.25  # seeds per second


@dataclass
class StyleMixState:
    """Layers ``layer`` .. num_ws-1 take their w from ``seed`` (coarse layers keep seed A's)."""

    enabled: bool = False
    seed: int = 1000
    layer: int = 7


@dataclass
class TruncationState:
    psi: float = 0.7
    cutoff: int = 14
    noise_mode: str = "const"


@dataclass
class DirectionsState:
    """GANSpace-style principal directions of W: one slider per direction, in standard deviations."""

    amounts: list[float] = field(default_factory=list)
    layer_start: int = 0
    layer_end: int = 14
    status: str = "not computed"


@dataclass
class RenderState:
    """How frames are rendered. ``full_*`` is the resting quality; ``preview_*`` is used while something moves.
    ``viewer.requests`` turns them into the library's ``RenderSettings``."""

    precision: str = "fp32"
    deterministic: bool = True
    view: str = "image"
    full_resolution: int = 128
    full_samples: int = 48
    full_importance: int = 48
    progressive: bool = True
    preview_auto: bool = True
    preview_target_fps: float = 20.0
    preview_resolution: int = 64
    preview_samples: int = 24
    preview_importance: int = 8
    preview_superres: bool = False
    preview_plane_scale: int = 1  # 1, 2 or 4: previews sample average-pooled tri-planes
    rest_delay: float = 0.25  # seconds without change before the full-quality frame is requested


@dataclass
class ModelState:
    path: str = ""
    loaded: str = ""
    description: str = ""
    message: str = ""
    error: bool = False
    loading: bool = False
    load_requested: str | None = None


@dataclass
class ExportState:
    directory: str = "out/viewer"  # out/ is git-ignored
    mesh_resolution: int = 256
    mesh_format: str = ".ply"
    mesh_colors: bool = True
    save_requested: bool = False
    mesh_requested: bool = False
    busy: bool = False
    progress: float = 0.0
    message: str = ""
    error: bool = False


@dataclass
class InvertState:
    """Your picture -> 3D: the picture, how to fit it, the job's progress and the latent file to save / load.

    ``yaw`` / ``pitch`` (degrees, viewer offsets) are used when ``estimate_camera`` is off."""

    image_path: str = ""
    steps: int = 80
    estimate_camera: bool = True
    yaw: float = 0.0
    pitch: float = 0.0
    latent_path: str = "out/viewer/latent.npz"
    fit_requested: bool = False
    cancel_requested: bool = False
    save_requested: bool = False
    load_requested: bool = False
    busy: bool = False
    stage: str = ""
    progress: float = 0.0
    has_preview: bool = False
    message: str = ""
    error: bool = False


@dataclass
class KeyframesState:
    """A camera path (``eg3d_core.camera_path``): keyframes, how to move between them, playback, its files and the
    MP4 render. ``keyframes`` holds immutable ``camera_path.Keyframe`` s (the widget replaces the tuple)."""

    keyframes: tuple[Any, ...] = ()
    selected: int = -1
    duration: float = 2.0  # seconds to the next keyframe, given to new keyframes
    fps: int = 30
    constant_speed: bool = False
    loop: bool = False
    time: float = 0.0  # the timeline's position, seconds
    playing: bool = False
    file: str = "out/viewer/camera_path.json"
    video_file: str = "out/viewer/camera_path.mp4"
    add_requested: bool = False
    goto_requested: int | None = None  # a keyframe's index: show its view
    scrubbed: bool = False  # the timeline moved: show the path's view at ``time``
    save_requested: bool = False
    load_requested: bool = False
    render_requested: bool = False
    cancel_requested: bool = False
    busy: bool = False  # rendering the MP4
    progress: float = 0.0
    message: str = ""
    error: bool = False


@dataclass
class PerfState:
    """Read-mostly numbers for the performance panel (written by the app from worker results and UI timing)."""

    ui_ms: float = 0.0
    ui_fps: float = 0.0
    render_fps: float = 0.0
    quality: str = ""
    stage_ms: dict[str, float] = field(default_factory=dict)
    planes_cached: bool = False
    dropped: int = 0
    cancelled: int = 0
    fps_limit: int = 60


@dataclass
class PanelState:
    """Which sections of the control panel are open (so scripts can open them, and tests can exercise them)."""

    model: bool = True
    camera: bool = True
    latent: bool = True
    stylemix: bool = False
    conditioning: bool = False
    directions: bool = False
    performance: bool = False  # the view's status lines show the frame rate and time
    render: bool = True
    export: bool = False
    invert: bool = False
    keyframes: bool = False
    shortcuts: bool = False


@dataclass
class AppState:
    camera: CameraState = field(default_factory=CameraState)
    conditioning: ConditioningState = field(default_factory=ConditioningState)
    latent: LatentState = field(default_factory=LatentState)
    stylemix: StyleMixState = field(default_factory=StyleMixState)
    truncation: TruncationState = field(default_factory=TruncationState)
    directions: DirectionsState = field(default_factory=DirectionsState)
    render: RenderState = field(default_factory=RenderState)
    model: ModelState = field(default_factory=ModelState)
    export: ExportState = field(default_factory=ExportState)
    invert: InvertState = field(default_factory=InvertState)
    keyframes: KeyframesState = field(default_factory=KeyframesState)
    perf: PerfState = field(default_factory=PerfState)
    panel: PanelState = field(default_factory=PanelState)

