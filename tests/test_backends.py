"""The backend dispatch (eg3d_core/kernels/dispatch.py): choosing a backend, the reference path on every device,
gradients through the generator, and the CPU backend leaving autograd to the reference code."""
from __future__ import annotations

import pytest
import torch
from conftest import FIXTURES, reference

import eg3d_core
from eg3d_core import kernels
from eg3d_core.config import GeneratorConfig, RenderingConfig
from eg3d_core.kernels import cpu, dispatch


def test_use_chooses_the_backend_here_and_env_sets_the_default(monkeypatch):
    monkeypatch.delenv("EG3D_BACKEND", raising=False)
    assert kernels.current() == "cpu"
    with kernels.use("ref"):
        assert kernels.current() == "ref"
        x, w, b = torch.randn(4, 8), torch.randn(8, 8), torch.randn(8)
        with torch.no_grad():
            assert dispatch.linear(x, w, b, False) is None  # the reference runs
        with kernels.use("cpu"):
            assert kernels.current() == "cpu"
        assert kernels.current() == "ref"
    assert kernels.current() == "cpu"
    monkeypatch.setenv("EG3D_BACKEND", "ref")
    assert kernels.current() == "ref"
    with kernels.use("cpu"):
        assert kernels.current() == "cpu"
    monkeypatch.setenv("EG3D_BACKEND", "cuda")
    with pytest.raises(ValueError, match="EG3D_BACKEND must be one of"):
        kernels.current()
    with pytest.raises(ValueError, match="backend must be one of"), kernels.use("fast"):
        pass


def test_render_workers_keep_the_callers_backend(cars_generator, monkeypatch):
    """The renderer's chunk workers are threads of their own: they run with the backend of the caller."""
    from eg3d_core.rendering.renderer import render_rays

    G = cars_generator
    planes = torch.randn(1, 3, 32, 32, 32)
    origins, dirs = torch.zeros(1, 3000, 3) + torch.tensor([0.0, 0.0, -2.7]), torch.tensor([0.0, 0.0, 1.0]).expand(
        1, 3000, 3)
    field = lambda pts: G.sample_planes(pts, planes)  # noqa: E731
    for name in ("field", "march", "importance"):
        monkeypatch.setattr(cpu, name, lambda *a, **k: pytest.fail("the CPU backend ran under use('ref')"))
    with torch.no_grad(), kernels.use("ref"):
        rgb, depth, _ = render_rays(field, origins, dirs, 2.25, 3.3, 8, 8, False, workers=2)
    assert torch.isfinite(rgb).all() and torch.isfinite(depth).all()


def test_reference_path_matches_the_original_on_each_device(device):
    """The reference path (what autograd, autocast, CUDA and CPUs without the kernels run) on each device against the
    original's outputs: the parity bound, max abs error 1e-4 (see tests/test_parity.py). TF32 is off: its 10-bit
    products would exceed it."""
    ref = reference("tiny_cars128")
    G = eg3d_core.load_generator(FIXTURES / "tiny_cars128" / "network-snapshot.pkl").to(device)
    z, c_cond, c_render = (torch.from_numpy(ref[k]).to(device) for k in ("z", "c_cond", "c_render"))
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad(), kernels.use("ref"):
            ws = G.mapping(z, c_cond, truncation_psi=0.7, truncation_cutoff=14)
            out = G.synthesis(ws, c_render)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    for key, want in (("image", "image_psi0p7"), ("image_depth", "image_depth_psi0p7")):
        torch.testing.assert_close(out[key].cpu(), torch.from_numpy(ref[want]), atol=1e-4, rtol=0, msg=key)
    torch.testing.assert_close(out["image_raw"].cpu(), torch.from_numpy(ref["feature_image_psi0p7"][:, :3]),
                               atol=1e-4, rtol=0)


def _tiny_generator() -> tuple[eg3d_core.Generator, torch.Tensor, torch.Tensor]:
    """A random generator small enough for finite differences (float64 weights), its latents and a camera."""
    torch.manual_seed(0)
    config = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=32, channel_base=512, channel_max=16,
                             triplane_resolution=32, triplane_channels=8, sr_module="2X", sr_channels=(16, 16),
                             rendering=RenderingConfig(depth_resolution=6, depth_resolution_importance=6,
                                                       neural_rendering_resolution=16))
    G = eg3d_core.Generator(config).double()
    c = eg3d_core.cameras.camera(eg3d_core.cameras.camera_defaults(config), yaw=0.3, pitch=-0.1).double()
    return G, torch.randn(1, G.num_ws, 16, dtype=torch.float64), c


def test_gradients_through_synthesis_match_finite_differences():
    """d(loss)/d(ws) and d(loss)/d(c) through G.synthesis (backbone, renderer, super-resolution) against central
    differences along the gradient's own direction (where the signal is largest). The generator hands float32 on
    between its stages and the field is piecewise smooth (bilinear texels, importance-sampling bins), so the
    differences are noisy: measured 0.2-1.5 % (ws) and 2-9 % (c) over steps of 1e-4 to 1e-2. Bounds: 5 % and 15 %; a
    path that drops a gradient misses by far more. Both backends give the same gradients: the CPU backend leaves
    autograd to the reference code."""
    G, ws, c = _tiny_generator()
    weights = {k: torch.randn(v.shape, dtype=torch.float64) for k, v in G.synthesis(ws, c).items()}

    def loss(ws: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        out = G.synthesis(ws, c)
        return sum((out[k].double() * weights[k]).mean() for k in out)

    grads = {}
    for backend in ("cpu", "ref"):
        with kernels.use(backend):
            ws_, c_ = ws.clone().requires_grad_(True), c.clone().requires_grad_(True)
            grads[backend] = torch.autograd.grad(loss(ws_, c_), (ws_, c_))
    for a, b in zip(*grads.values(), strict=True):
        assert torch.equal(a, b)
    grad_ws, grad_c = grads["cpu"]
    assert torch.isfinite(grad_ws).all() and torch.isfinite(grad_c).all()
    assert (grad_ws.abs().amax(dim=2) > 0).all()  # every layer's latent matters
    with torch.no_grad():
        for grad, step, bound, moved in ((grad_ws, 1e-3, 0.05, lambda d: (ws + d, c)),
                                         (grad_c, 1e-3, 0.15, lambda d: (ws, c + d))):
            direction = grad / grad.norm()
            slope = (loss(*moved(step * direction)) - loss(*moved(-step * direction))) / (2 * step)
            torch.testing.assert_close(slope, grad.norm(), rtol=bound, atol=0)


def test_single_images_agree_on_both_backends(cars_generator):
    """One image at a time (the viewer's case) takes the reference's fused modulation on "ref" and the CPU backend's
    paths on "cpu": the parity bound, max abs error 1e-4, for op-order rounding of the same maths."""
    ref = reference("tiny_cars128")
    G = cars_generator
    z, c_cond, c_render = (torch.from_numpy(ref[k])[:1] for k in ("z", "c_cond", "c_render"))
    outs = []
    for backend in ("cpu", "ref"):
        with torch.no_grad(), kernels.use(backend):
            outs.append(G.synthesis(G.mapping(z, c_cond, 0.7, 14), c_render))
    for key in outs[0]:
        torch.testing.assert_close(outs[0][key], outs[1][key], atol=1e-4, rtol=0, msg=key)
