"""Camera paths end to end: keyframes -> our JSON -> ``eg3d video --path`` -> MP4, nerfstudio's JSON through
``eg3d path`` in and out, ``render_path_video``'s progress and cancellation, and ``eg3d mesh --camera``: the
exported camera projects the mesh's vertices onto the depth rendered from that camera."""
from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import trimesh

from eg3d_core import cameras
from eg3d_core.apps.cli import main
from eg3d_core.apps.samples import render_outputs
from eg3d_core.apps.video import frame_image, path_frames, render_path_video
from eg3d_core.camera_export import OPENCV_TO_OPENGL, Y_UP_TO_BLENDER, camera_record
from eg3d_core.camera_path import CameraPath, Keyframe, keyframe_ws, load_path, path_cameras, save_path
from eg3d_core.latents import LatentSource, save_ws
from eg3d_core.settings import RenderSettings

FIXTURES = Path(__file__).parent / "fixtures"
PKL = str(FIXTURES / "tiny_cars128" / "network-snapshot.pkl")
FAST = ["--nrr", "16", "--sample-mult", "1", "-q", "--device", "cpu"]
SETTINGS = RenderSettings(neural_rendering_resolution=16)


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _path(G) -> CameraPath:
    own = torch.randn(1, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(5)) * 0.3
    return CameraPath((Keyframe(0.5, -0.2, seed=3, duration=0.5), Keyframe(-0.3, 0.1, fov=30.0, duration=0.5),
                       Keyframe(0.1, 0.0, radius=2.4, ws=own)), fps=6)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


def test_path_frames_show_each_keyframe(cars_generator):
    G = cars_generator
    path = _path(G)
    current = torch.randn(1, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(6)) * 0.3
    frames = list(path_frames(G, path, SETTINGS, current))
    assert len(frames) == path.num_frames == 7
    cams = path_cameras(path, G.config)
    for frame_index, k in ((0, 0), (3, 1), (6, 2)):
        ws = keyframe_ws(path.keyframes[k], G, current)
        with torch.no_grad():
            out = render_outputs(G, G.planes(ws), ws, cams[frame_index : frame_index + 1], SETTINGS)
        np.testing.assert_array_equal(frames[frame_index], frame_image(out, "image")[0])
    assert not np.array_equal(frames[0], frames[3])


def test_round_trip_keyframes_json_video(cars_generator, tmp_path, capsys):
    G = cars_generator
    path = _path(G)
    file = save_path(path, tmp_path / "tour.json")
    current = torch.randn(1, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(6)) * 0.3
    save_ws(current, tmp_path / "mine.npz")
    rc = main(["video", "--model", PKL, "--path", str(file), "--latent", str(tmp_path / "mine.npz"),
               "--outdir", str(tmp_path / "out"), *FAST])
    out, err = capsys.readouterr()
    assert rc == 0, err
    video = tmp_path / "out" / "tour.mp4"
    assert f"wrote {video} (7 frames, 1 s at 6 fps)" in out
    decoded = iio.imread(video)
    expected = list(path_frames(G, load_path(file), RenderSettings(neural_rendering_resolution=16), current))
    assert len(decoded) == len(expected) == 7
    assert iio.immeta(video)["fps"] == pytest.approx(6)
    for got, want in zip(decoded, expected, strict=True):
        assert got.shape == want.shape
        assert _psnr(got, want) > 30  # libx264 at 10M: the same pictures up to compression
    # Another frame rate resamples the same path.
    rc = main(["video", "--model", PKL, "--path", str(file), "--latent", str(tmp_path / "mine.npz"), "--fps", "4",
               "--outdir", str(tmp_path / "out4"), *FAST])
    assert rc == 0 and len(iio.imread(tmp_path / "out4" / "tour.mp4")) == 5


def test_video_path_refusals(cars_generator, tmp_path, capsys):
    G = cars_generator
    no_latent = save_path(CameraPath((Keyframe(0.0, 0.0), Keyframe(0.2, 0.0, duration=0.5))), tmp_path / "a.json")
    # Keyframes without a latent show the first of --seeds.
    assert main(["video", "--model", PKL, "--path", str(no_latent), "--seeds", "4", "--outdir",
                 str(tmp_path / "ok"), *FAST]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "eg3d-camera-path", "version": 1, "keyframes": [{"yaw": 0, "pitch": 9}]}))
    rc = main(["video", "--model", PKL, "--path", str(bad), "--outdir", str(tmp_path / "x"), *FAST])
    line = error_line(capsys.readouterr().err)
    assert rc == 1 and "keyframes[0].pitch" in line and not (tmp_path / "x").exists()
    wrong = save_path(CameraPath((Keyframe(0.0, 0.0, ws=torch.zeros(1, G.num_ws + 2, G.w_dim)),)), tmp_path / "w.json")
    rc = main(["video", "--model", PKL, "--path", str(wrong), "--outdir", str(tmp_path / "y"), *FAST])
    line = error_line(capsys.readouterr().err)
    assert rc == 1 and "keyframe 0: ws of shape" in line and not (tmp_path / "y").exists()
    rc = main(["video", "--model", PKL, "--path", str(no_latent), "--focal", "2", "--outdir", str(tmp_path / "z"),
               *FAST])
    assert rc == 1 and "--focal" in error_line(capsys.readouterr().err)


def test_render_path_video_progress_and_cancel(cars_generator, tmp_path):
    G = cars_generator
    path = _path(G)
    calls: list[tuple[int, int]] = []
    n = render_path_video(G, path, tmp_path / "a.mp4", SETTINGS, LatentSource(seed=1), progress=lambda d, t:
                          calls.append((d, t)))
    assert n == 7 and calls == [(i, 7) for i in range(8)]
    assert len(iio.imread(tmp_path / "a.mp4")) == 7
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 3

    out = tmp_path / "cancel"
    out.mkdir()
    assert render_path_video(G, path, out / "b.mp4", SETTINGS, LatentSource(seed=1), should_stop=stop) is None
    assert len(asked) == 4 and list(out.iterdir()) == []  # no video, no temporary


def test_nerfstudio_in_and_out_through_the_cli(cars_generator, tmp_path, capsys):
    G = cars_generator
    path = CameraPath((Keyframe(0.4, -0.2, duration=1.0), Keyframe(-0.6, 0.1, fov=25.0, radius=2.5)), fps=5,
                      loop=True)
    ours = save_path(path, tmp_path / "p.json")
    ns = tmp_path / "ns" / "camera_path.json"
    assert main(["path", "--model", PKL, "--in", str(ours), "--to-nerfstudio", str(ns), "--resolution", "64", "-q"]) == 0
    data = json.loads(ns.read_text())
    assert data["render_width"] == 64 and data["is_cycle"] and len(data["camera_path"]) == path.num_frames
    back = tmp_path / "back.json"
    assert main(["path", "--model", PKL, "--from-nerfstudio", str(ns), "--out", str(back), "-q"]) == 0
    capsys.readouterr()
    torch.testing.assert_close(path_cameras(load_path(back), G.config), path_cameras(path, G.config),
                               atol=1e-5, rtol=1e-5)
    # One view (the model's opening view by default) as nerfstudio's file.
    one = tmp_path / "view.json"
    assert main(["path", "--model", PKL, "--to-nerfstudio", str(one), "-q"]) == 0
    view = json.loads(one.read_text())["camera_path"]
    defaults = cameras.camera_defaults(G.config)
    pose = cameras.camera(defaults, *defaults.view)[0, :16].double().numpy().reshape(4, 4)
    assert len(view) == 1
    np.testing.assert_allclose(np.array(view[0]["camera_to_world"]).reshape(4, 4), pose @ OPENCV_TO_OPENGL, atol=1e-6)
    # Refusals: one line each, nothing written.
    rc = main(["path", "--model", PKL, "--in", str(ours), "-q"])
    assert rc == 1 and "nothing to write" in error_line(capsys.readouterr().err)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"camera_path": [{"camera_to_world": [1, 0, 0], "fov": 30}], "fps": 24}))
    rc = main(["path", "--model", PKL, "--from-nerfstudio", str(broken), "--out", str(tmp_path / "never.json"), "-q"])
    line = error_line(capsys.readouterr().err)
    assert rc == 1 and "camera_path[0].camera_to_world" in line and str(broken) in line
    assert not (tmp_path / "never.json").exists()


def test_eg3d_path_makes_keyframed_paths(cars_generator, tmp_path, capsys):
    out = tmp_path / "tour.json"
    rc = main(["path", "--model", PKL, "--yaw=0.8,0,-0.8", "--pitch=-0.3", "--seeds", "1,2,3", "--trunc", "0.6",
               "--duration", "1.5", "--fps", "12", "--loop", "--constant-speed", "--fov", "20", "--out", str(out)])
    assert rc == 0 and f"wrote {out} (3 keyframes, 54 frames, 4.5 s)" in capsys.readouterr().out
    path = load_path(out)
    assert path == CameraPath(tuple(Keyframe(y, -0.3, fov=20.0, seed=s, psi=0.6, duration=1.5)
                                    for y, s in ((0.8, 1), (0.0, 2), (-0.8, 3))), fps=12, loop=True,
                              constant_speed=True)
    # Converting keeps the file's settings unless told otherwise.
    again = tmp_path / "again.json"
    assert main(["path", "--model", PKL, "--in", str(out), "--no-loop", "--out", str(again), "-q"]) == 0
    assert load_path(again) == CameraPath(path.keyframes, fps=12, loop=False, constant_speed=True)
    capsys.readouterr()
    for argv, message in ((["--yaw=0.1,0.2", "--pitch=0,0,0"], "--yaw gives 2 values for 3 keyframes"),
                          (["--yaw=0.1"], "both --yaw and --pitch"),
                          (["--in", str(out), "--seeds", "1"], "--seeds describes a new path")):
        rc = main(["path", "--model", PKL, *argv, "--out", str(tmp_path / "never.json"), "-q"])
        assert rc == 1 and message in error_line(capsys.readouterr().err)
    with pytest.raises(SystemExit) as e:  # argparse's range check: one line, status 1
        main(["path", "--model", PKL, "--yaw=4", "--pitch=0", "--out", str(tmp_path / "never.json")])
    assert e.value.code == 1 and "argument --yaw" in error_line(capsys.readouterr().err)
    assert not (tmp_path / "never.json").exists()
    rc = main(["mesh", "--model", PKL, "--yaw", "0.1", "--pitch", "0", "--outdir", str(tmp_path / "m"), "-q"])
    assert rc == 1 and "give --camera too" in error_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------------------------------------------
# The camera next to a mesh


def _depth_agreement(vertices: np.ndarray, record: dict, depth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Project mesh vertices with the record's OpenCV camera; keep the nearest vertex per pixel (a point z-buffer
    of the mesh) and compare its distance from the camera centre with the rendered depth where the render is
    opaque. Returns the silhouettes' IoU and the signed median / 90th percentile absolute depth difference."""
    w2c = np.array(record["opencv"]["world2cam"])
    k = np.array(record["opencv"]["K"])
    res = record["width"]
    xc = vertices.astype(np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    in_front = xc[:, 2] > 1e-6
    uvw = xc[in_front] @ k.T
    col, row = np.round(uvw[:, 0] / uvw[:, 2]).astype(int), np.round(uvw[:, 1] / uvw[:, 2]).astype(int)
    dist = np.linalg.norm(xc[in_front], axis=1)
    inside = (col >= 0) & (col < res) & (row >= 0) & (row < res)
    zbuf = np.full((res, res), np.inf)
    np.minimum.at(zbuf, (row[inside], col[inside]), dist[inside])
    hit = np.isfinite(zbuf)
    opaque = mask > 0.5
    union = (hit | opaque).sum()
    both = hit & (mask > 0.9)
    if not both.any():
        return {"iou": 0.0, "median": math.inf, "p90": math.inf}
    diff = zbuf[both] - depth[both]
    return {"iou": float((hit & opaque).sum() / union), "median": float(np.median(diff)),
            "p90": float(np.percentile(np.abs(diff), 90))}


def _render_depth(G, ws: torch.Tensor, record: dict) -> tuple[np.ndarray, np.ndarray]:
    """Depth and opacity [R, R] rendered from the record's OpenCV camera (its pixel intrinsics normalised back:
    OpenCV's pixel centres sit at integers, ours at +0.5)."""
    res = record["width"]
    k = np.array(record["opencv"]["K"])
    kn = np.array([[k[0, 0] / res, 0, (k[0, 2] + 0.5) / res], [0, k[1, 1] / res, (k[1, 2] + 0.5) / res], [0, 0, 1]])
    c = torch.from_numpy(np.concatenate([np.array(record["opencv"]["cam2world"]).reshape(-1), kn.reshape(-1)]))
    settings = RenderSettings(neural_rendering_resolution=res, sample_mult=2)
    with torch.no_grad():
        out = G.render_planes(G.planes(ws), ws, c.float()[None], **settings.synthesis_kwargs(G.config))
    return out["image_depth"][0, 0].numpy(), out["image_mask"][0, 0].numpy()


def test_mesh_camera_lines_up_with_the_rendered_depth(demo_generator, tmp_path, capsys):
    """The exported OpenCV camera projects the exported mesh onto the depth rendered from that camera.

    Tolerance: the rendered depth is the opacity-weighted mean depth along each ray, which lies a little behind
    the level-10 iso-surface the mesh is (the density rises through the surface over a few samples); on the demo
    model that offset is about 0.035 scene units (the car is 1 unit long; the coarse samples at --sample-mult 2
    are 2.5 / 48 = 0.052 apart). So: median difference within one sample spacing (0.06), 90 % of pixels within
    0.08, silhouettes overlapping at IoU > 0.88 (vertex splats at 64 x 64 fray the outline by a pixel). A camera
    off by 0.3 rad of yaw or 0.2 units of radius, or the OpenGL matrix taken for the OpenCV one, fails these.
    """
    G = demo_generator
    rc = main(["mesh", "--seeds", "0", "--trunc", "0.7", "--resolution", "128", "--no-colors", "--camera",
               "--outdir", str(tmp_path), "-q", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed0000.camera.json", "seed0000.ply"]
    record = json.loads((tmp_path / "seed0000.camera.json").read_text())
    assert record["format"] == "eg3d-camera" and record["mesh"] == "seed0000.ply"
    defaults = cameras.camera_defaults(G.config)
    assert (record["view"]["yaw"], record["view"]["pitch"]) == pytest.approx(defaults.view)
    vertices = np.asarray(trimesh.load(tmp_path / "seed0000.ply", process=False).vertices)
    res = 64
    record = camera_record(G.config, *defaults.view, resolution=res, mesh="seed0000.ply")
    ws = LatentSource(seed=0, psi=0.7).ws(G)
    depth, mask = _render_depth(G, ws, record)
    good = _depth_agreement(vertices, record, depth, mask)
    assert good["iou"] > 0.88 and abs(good["median"]) < 0.06 and good["p90"] < 0.08, good

    def fails(camera: dict) -> bool:
        m = _depth_agreement(vertices, camera, depth, mask)
        return m["iou"] <= 0.88 or abs(m["median"]) >= 0.06 or m["p90"] >= 0.08

    yaw, pitch = defaults.view
    assert fails(camera_record(G.config, yaw + 0.3, pitch, resolution=res))
    assert fails(camera_record(G.config, yaw, pitch, radius=defaults.radius + 0.2, resolution=res))
    swapped = json.loads(json.dumps(record))
    swapped["opencv"]["world2cam"] = np.linalg.inv(np.array(record["opengl"]["cam2world"])).tolist()
    assert fails(swapped)


def test_camera_record_conventions(cars_generator):
    config = cars_generator.config
    rec = camera_record(config, 0.3, -0.2, radius=2.5, fov=20.0, resolution=256)
    cv = np.array(rec["opencv"]["cam2world"])
    gl = np.array(rec["opengl"]["cam2world"])
    # The documented flips: OpenGL = OpenCV with the camera's y and z axes negated; Blender = OpenGL in Z-up world.
    np.testing.assert_allclose(gl, cv @ np.diag([1.0, -1, -1, 1]), atol=1e-12)
    np.testing.assert_allclose(np.array(rec["blender"]["matrix_world_y_up"]), gl, atol=1e-12)
    np.testing.assert_allclose(np.array(rec["blender"]["matrix_world"]), Y_UP_TO_BLENDER @ gl, atol=1e-12)
    np.testing.assert_allclose(np.array(rec["opencv"]["world2cam"]) @ cv, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(cv[:3, :3] @ cv[:3, :3].T, np.eye(3), atol=1e-12)
    # Blender's world is Z up: the camera sits above the ground when it looks from above (pitch < 0) ...
    blender = np.array(rec["blender"]["matrix_world"])
    assert blender[2, 3] > 0 and cv[1, 3] > 0
    # ... and looks at the pivot (Blender cameras look down their -z axis).
    pivot_b = Y_UP_TO_BLENDER[:3, :3] @ np.asarray(cameras.camera_defaults(config).pivot)
    to_pivot = pivot_b - blender[:3, 3]
    np.testing.assert_allclose(-blender[:3, 2], to_pivot / np.linalg.norm(to_pivot), atol=1e-6)
    # Same camera as ours: position, and the pixel intrinsics are the normalised focal times the size.
    c = cameras.camera(cameras.camera_defaults(config), 0.3, -0.2, radius=2.5, focal=cameras.focal_from_fov(20.0))
    np.testing.assert_allclose(cv, c[0, :16].double().numpy().reshape(4, 4), atol=1e-6)
    focal = float(c[0, 16])
    assert rec["opencv"]["fx"] == pytest.approx(focal * 256) and rec["opencv"]["cx"] == 127.5
    assert rec["blender"]["lens"] / rec["blender"]["sensor_height"] == pytest.approx(focal)
    assert math.tan(math.radians(rec["vertical_fov_deg"]) / 2) == pytest.approx(0.5 / focal)
    with pytest.raises(Exception, match="both yaw and pitch"):
        camera_record(config, 0.3)
