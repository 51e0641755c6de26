"""The real viewer app end to end under a virtual X server (``xvfb-run``; Mesa llvmpipe provides OpenGL).

One scripted session drives the app like a user (camera drag, zoom, seed change, view toggle, a failing checkpoint
load) and saves window screenshots (glReadPixels of the default framebuffer) after each full-quality frame. The test
checks that the pictures are not blank, that they change when the camera or the seed changes, and that the app
reports its UI frame times. Set ``EG3D_SCREENSHOT_DIR`` to keep the screenshots.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import held_out_car_picture  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "tiny_cars128" / "network-snapshot.pkl"
PANEL_WIDTH = 400  # viewer.layout.PANEL_WIDTH: the control panel; the rendered view is to its right
WEB_DEMO_HINT = "use the web demo instead: "

needs_xvfb = pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run is not installed")


def launch(args: list[str], env: dict[str, str] | None = None, xvfb: bool = True,
           timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "launch_viewer.py"), *args]
    if xvfb:
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", *cmd]
    return subprocess.run(cmd, cwd=ROOT, env=env or os.environ.copy(), capture_output=True, text=True, timeout=timeout)


def view_region(path: Path) -> np.ndarray:
    img = np.asarray(Image.open(path).convert("RGB")).astype(np.float32)
    return img[:, PANEL_WIDTH:]


def assert_web_demo_runs(command: str, env: dict[str, str], cwd: Path) -> None:
    """``command --help`` works as a user would type it, outside the checkout."""
    r = subprocess.run([*shlex.split(command), "--help"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--model" in r.stdout, f"{command} --help failed:\n{r.stdout}{r.stderr}"


def test_no_display_says_so_in_one_line_and_names_a_web_demo_command_that_works(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = launch(["--model", str(FIXTURE)], env=env, xvfb=False, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "no display" in lines[0] and WEB_DEMO_HINT in lines[0]
    assert "Traceback" not in r.stderr
    assert_web_demo_runs(lines[0].split(WEB_DEMO_HINT, 1)[1], env, tmp_path)


@pytest.mark.parametrize("where", ["path", "beside", "module"])
def test_web_demo_command_is_found_or_falls_back_to_the_module(where, tmp_path, monkeypatch) -> None:
    """On PATH it is named as such; a venv that is not activated has it beside its python; else ``python -m``."""
    from eg3d_viewer import launch as launcher

    python = sys.executable
    installed = Path(python).with_name("eg3d-web")
    if where != "module" and not installed.is_file():
        pytest.skip("eg3d-web is not installed beside this python")
    env = os.environ.copy()
    if where == "path":
        env["PATH"] = f"{installed.parent}{os.pathsep}{env.get('PATH', '')}"
    else:
        env["PATH"] = str(tmp_path)  # nothing named eg3d-web there
    monkeypatch.setenv("PATH", env["PATH"])
    if where == "module":
        monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # no eg3d-web beside it
    command = launcher.web_demo_command()
    expected = {"path": "eg3d-web", "beside": shlex.quote(str(installed)),
                "module": shlex.join([str(tmp_path / "python"), "-m", "eg3d_core.apps.gradio_app"])}[where]
    assert command == expected
    if where == "module":
        command = shlex.join([python, "-m", "eg3d_core.apps.gradio_app"])  # the real python, same module
    assert_web_demo_runs(command, env, tmp_path)


def test_bad_script_is_rejected_before_anything_starts() -> None:
    r = launch(["--script", '[{"orbit": "left"}]'], xvfb=False, timeout=60)
    assert r.returncode == 2 and "bad value for 'orbit'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@needs_xvfb
def test_scripted_session_screenshots(tmp_path) -> None:
    pytest.importorskip("imgui_bundle")
    pytest.importorskip("glfw")
    pytest.importorskip("OpenGL")
    out = Path(os.environ.get("EG3D_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    shots = {name: out / f"viewer_{name}.png" for name in ("start", "orbit", "seed_depth", "after_bad_load", "final")}
    # Every panel section open, so that every widget is drawn at least once.
    sections = ["stylemix", "conditioning", "directions", "export", "shortcuts"]
    script = [
        {"set": {f"panel.{name}": True for name in sections}},
        {"wait": "directions"},
        {"snapshot": str(shots["start"])},
        {"orbit": [120, 0]},
        {"frame": 3, "orbit": [60, -30]},           # two drags on different frames: previews, then a full frame
        {"zoom": 1},
        {"snapshot": str(shots["orbit"])},
        {"action": "next_seed"},
        {"set": {"render.view": "depth"}},
        {"snapshot": str(shots["seed_depth"])},
        {"set": {"export.directory": str(tmp_path / "export")}},
        {"action": "save"},                          # PNG image + raw + depth, on the export thread
        {"wait": "export"},
        {"load": str(tmp_path / "missing.pkl")},    # must fail with a message and keep the current model
        {"wait": "model"},
        {"set": {"render.view": "side by side"}},
        {"action": "prev_seed"},
        {"snapshot": str(shots["after_bad_load"])},
    ]
    r = launch(["--model", str(FIXTURE), "--cache-dir", str(tmp_path / "cache"), "--snapshot", str(shots["final"]),
                "--frames", "30", "--timeout", "400", "--script", json.dumps(script)])
    assert r.returncode == 0, r.stdout + r.stderr
    for name, path in shots.items():
        assert path.is_file(), f"{name} screenshot missing\n{r.stdout}{r.stderr}"
        img = np.asarray(Image.open(path).convert("RGB"))
        assert img.shape == (800, 1280, 3)
    views = {name: view_region(path) for name, path in shots.items()}
    for name, v in views.items():
        assert v.std() > 5.0, f"{name}: the rendered view is blank"
    panel = np.asarray(Image.open(shots["start"]).convert("RGB")).astype(np.float32)[:, :PANEL_WIDTH]
    assert panel.std() > 5.0, "the control panel was not drawn"

    def differ(a: str, b: str) -> float:
        return float(np.abs(views[a] - views[b]).mean())

    assert differ("start", "orbit") > 2.0, "the view did not change after the camera moved"
    assert differ("orbit", "seed_depth") > 2.0, "the view did not change with the seed and view mode"
    assert differ("seed_depth", "after_bad_load") > 2.0
    # The failed load left the model in place: the side-by-side view after it is still a rendering, and the final
    # frame (nothing changed since) is the same picture.
    assert differ("after_bad_load", "final") < 1.0
    saved = sorted(p.name for p in (tmp_path / "export").iterdir())
    # The drags turned the opening view (yaw 45, pitch -15) by -51.6 and +8.6 degrees.
    assert saved == ["seed0001_yaw-7_pitch-6_depth.npy", "seed0001_yaw-7_pitch-6_depth.png",
                     "seed0001_yaw-7_pitch-6_image.png", "seed0001_yaw-7_pitch-6_raw.png"], saved
    report = r.stdout
    assert re.search(r"UI frame times, all: \d+ frames: mean [\d.]+ ms", report), report
    assert re.search(r"UI thread CPU time per frame: \d+ frames", report), report
    print(report)


def object_mask(view: np.ndarray) -> np.ndarray:
    """Pixels of the rendered view that show the model (the demo model's background is white, the window's dark)."""
    return (view.min(axis=-1) < 200) & (view.max(axis=-1) > 60)


@needs_xvfb
def test_key_flight_keyframes_and_depth_screenshots(tmp_path) -> None:
    """Flight with synthetic key events (W, then fly mode and the right arrow), a camera path made in the viewer
    (keyframes -> JSON -> cleared -> loaded -> played -> MP4, and a cancelled MP4), the depth view and the
    side-by-side view, on the bundled demo model (white background: the object is easy to find in the pictures)."""
    pytest.importorskip("imgui_bundle")
    out = Path(os.environ.get("EG3D_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    names = ("fly_start", "fly_forward", "fly_turned", "keyframes", "loaded", "played", "rendering", "video_done",
             "depth", "side_by_side", "final")
    shots = {name: out / f"viewer_{name}.png" for name in names}
    path_file, video, cancelled = tmp_path / "path.json", tmp_path / "path.mp4", tmp_path / "cancelled.mp4"
    script = [
        {"set": {"panel.shortcuts": True, "panel.latent": False, "panel.render": False}},
        {"snapshot": str(shots["fly_start"])},
        {"hold": {"keys": ["w"], "frames": 30}},          # fly towards the model
        {"snapshot": str(shots["fly_forward"])},
        {"action": "toggle_camera_mode"},                 # P: arrows turn the view in place
        {"hold": {"keys": ["right"], "frames": 10}},
        {"snapshot": str(shots["fly_turned"])},
        {"action": "toggle_camera_mode"},
        {"action": "reset_view"},
        {"set": {"panel.shortcuts": False, "panel.camera": False, "panel.keyframes": True,
                 "keyframes.file": str(path_file), "keyframes.video_file": str(video), "keyframes.fps": 10}},
        {"action": "add_keyframe"},                       # K
        {"orbit": [150, 0]},
        {"action": "next_seed"},
        {"wait": "full"},
        {"action": "add_keyframe"},
        {"orbit": [150, 30]},
        {"wait": "full"},
        {"action": "add_keyframe"},
        {"action": "save_path"},
        {"snapshot": str(shots["keyframes"])},
        {"action": "clear_path"},
        {"action": "load_path"},
        {"snapshot": str(shots["loaded"])},               # on the first keyframe
        {"action": "play_path"},                          # L: previews while it plays, the full frame at its end
        {"snapshot": str(shots["played"])},
        {"action": "render_path_video"},
        {"wait": 0.5},
        {"capture": str(shots["rendering"])},
        {"wait": "video"},
        {"snapshot": str(shots["video_done"])},
        {"set": {"keyframes.video_file": str(cancelled)}},
        {"action": "render_path_video"},
        {"action": "cancel_path_video"},
        {"wait": "video"},
        {"set": {"render.view": "depth", "panel.keyframes": False, "panel.render": True}},
        {"snapshot": str(shots["depth"])},
        {"set": {"render.view": "side by side"}},
        {"snapshot": str(shots["side_by_side"])},
    ]
    r = launch(["--snapshot", str(shots["final"]), "--frames", "5", "--timeout", "500", "--script", json.dumps(script)])
    assert r.returncode == 0, r.stdout + r.stderr
    views = {name: view_region(path) for name, path in shots.items() if name != "rendering"}
    for name, v in views.items():
        assert v.std() > 5.0, f"{name}: the rendered view is blank"
    # W flew towards the model: it covers more of the view. Turning right in fly mode moves it left in the picture.
    start, forward, turned = (object_mask(views[n]) for n in ("fly_start", "fly_forward", "fly_turned"))
    assert forward.sum() > 1.2 * start.sum()
    assert np.nonzero(turned)[1].mean() < np.nonzero(forward)[1].mean() - 20
    # The path round trip: three keyframes saved, cleared, loaded again; played; rendered; a cancelled render
    # leaves no file.
    saved = json.loads(path_file.read_text())
    assert saved["format"] == "eg3d-camera-path" and len(saved["keyframes"]) == 3
    assert [k["seed"] for k in saved["keyframes"]] == [0, 1, 1]
    assert float(np.abs(views["keyframes"][:, :, :] - views["loaded"]).mean()) > 2.0  # back at the first keyframe
    assert float(np.abs(views["played"] - views["keyframes"]).mean()) < 1.0  # the path ends on its last keyframe
    assert video.stat().st_size > 0 and not cancelled.exists()
    # Depth: colour-mapped where the model is, the white background elsewhere (not the far colour).
    depth = views["depth"]
    h, w = depth.shape[:2]
    size = min(h, w)
    tile = depth[(h - size) // 2:(h + size) // 2, (w - size) // 2:(w + size) // 2]
    # Inset a few pixels (the picture's edge rows may be the window's), bottom left left out (the status lines).
    corners = np.concatenate([tile[5:25, 5:25], tile[5:25, -25:-5], tile[-25:-5, -25:-5]])
    assert corners.min() > 240, "empty space in the depth view is not the background"
    assert object_mask(tile).mean() > 0.1
    # Side by side: the final image large, raw and depth stacked beside it, most of the view used.
    sbs = views["side_by_side"]
    used = (np.abs(sbs - sbs[0, 0]).max(axis=-1) > 10).mean()
    assert used > 0.55, f"side by side uses {used:.0%} of the view"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / max(float(((a - b) ** 2).mean()), 1e-6)))


@needs_xvfb
def test_picture_to_3d_round_trip_in_the_viewer(tmp_path) -> None:
    """Drop a picture -> the picture and the fit so far fill the view -> the fit becomes the latent, seen from the
    estimated camera -> orbit -> mesh -> save the latent -> another seed -> drop the saved latent -> the same view;
    then a second fit cancelled half-way leaves the latent alone."""
    pytest.importorskip("imgui_bundle")
    from eg3d_viewer.layout import tile_views

    out = Path(os.environ.get("EG3D_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    picture = held_out_car_picture(tmp_path / "car.png", 50.0, -12.0)
    shots = {name: out / f"viewer_invert_{name}.png"
             for name in ("start", "fitting", "fitted", "orbit", "seed", "reloaded", "cancelled")}
    export = tmp_path / "export"
    script = [
        {"set": {"invert.steps": 40, "export.directory": str(export), "export.mesh_resolution": 64,
                 "invert.latent_path": str(export / "car.npz")}},
        {"snapshot": str(shots["start"])},
        {"drop": str(tmp_path / "car.png")},
        {"wait": 2},
        {"capture": str(shots["fitting"])},
        {"wait": "invert"},
        {"snapshot": str(shots["fitted"])},
        {"orbit": [160, 0]},
        {"snapshot": str(shots["orbit"])},
        {"action": "export_mesh"},
        {"wait": "export"},
        {"set": {"invert.save_requested": True}},
        {"wait": 1},
        {"action": "next_seed"},
        {"snapshot": str(shots["seed"])},
        {"drop": str(export / "car.npz")},
        {"snapshot": str(shots["reloaded"])},
        {"drop": str(tmp_path / "car.png")},
        {"wait": 2},
        {"set": {"invert.cancel_requested": True}},
        {"wait": "invert"},
        {"snapshot": str(shots["cancelled"])},
    ]
    r = launch(["--cache-dir", str(tmp_path / "cache"), "--timeout", "500", "--script", json.dumps(script),
                "--snapshot", str(out / "viewer_invert_final.png"), "--frames", "1"])
    assert r.returncode == 0, r.stdout + r.stderr
    # The view without the status lines at its bottom (they say what was saved last, which differs between shots).
    views = {name: view_region(path)[:700] for name, path in shots.items()}
    w, h = 1280 - PANEL_WIDTH, 800

    def tile(view: np.ndarray, index: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The index-th of n tiles of the view, and the picture resized to it."""
        x, y, s = (round(v) for v in tile_views(w, h, n)[index])
        crop = view[y + 2:min(y + s - 2, 700), x + 2:x + s - 2]
        ref = np.asarray(Image.fromarray(picture).resize((s, s), Image.BILINEAR)).astype(np.float32)
        return crop, ref[2:2 + crop.shape[0], 2:-2]

    # While fitting, the first tile is the picture itself.
    assert _psnr(*tile(views["fitting"], 0, 2)) > 22.0
    # The fit, from the estimated camera, looks like the picture; the opening seed did not.
    fitted, start = _psnr(*tile(views["fitted"], 0, 1)), _psnr(*tile(views["start"], 0, 1))
    assert fitted > start + 2.0 and fitted > 16.0, (fitted, start)

    def differ(a: str, b: str) -> float:
        return float(np.abs(views[a] - views[b]).mean())

    assert differ("fitted", "orbit") > 2.0 and differ("orbit", "seed") > 2.0
    assert differ("orbit", "reloaded") < 1.0  # the saved latent, loaded again: the same picture
    assert differ("reloaded", "cancelled") < 1.0  # a cancelled fit changes nothing
    meshes = list(export.glob("car_*_mesh64.ply"))
    assert len(meshes) == 1 and meshes[0].read_bytes().startswith(b"ply"), sorted(export.iterdir())
    from eg3d_core.latents import LatentSource

    assert tuple(LatentSource.from_file(export / "car.npz").given.shape) == (1, 10, 128)
