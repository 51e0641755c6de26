"""Rendering components against the original's intermediate outputs (rays, importance samples)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import reference
from test_native import X86_AVX2

from eg3d_core.kernels import cpu
from eg3d_core.kernels import field as native
from eg3d_core.rendering.marcher import march
from eg3d_core.rendering.rays import sample_rays
from eg3d_core.rendering.renderer import importance_depths, stratified_depths
from eg3d_core.rendering.triplane import project


def test_rays_match_original():
    for name in ("tiny_cars128", "tiny_ffhq512"):
        ref = reference(name)
        res = int(round(ref["ray_origins"].shape[1] ** 0.5))
        origins, dirs = sample_rays(torch.from_numpy(ref["c_render"]), res)
        assert np.abs(origins.numpy() - ref["ray_origins"]).max() < 1e-6
        assert np.abs(dirs.numpy() - ref["ray_directions"]).max() < 1e-6


def test_plane_projection_is_xy_xz_zx():
    grid = project(torch.tensor([[[1.0, 2.0, 3.0]]]), box_warp=2.0)
    assert grid[0, :, 0].tolist() == [[1.0, 2.0], [1.0, 3.0], [3.0, 1.0]]


def test_importance_samples_match_original(cars_generator):
    """Deterministic importance depths (before merging) for every 16th ray, from the coarse pass of the fixture."""
    G = cars_generator
    ref = reference("tiny_cars128")
    r = G.config.rendering
    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(ref["z"]), torch.from_numpy(ref["c_cond"]), 0.7, 14)
        planes = G.planes(ws)
        origins, dirs = sample_rays(torch.from_numpy(ref["c_render"]), r.neural_rendering_resolution)
        depths = stratified_depths(2, origins.shape[1], r.ray_start, r.ray_end, r.depth_resolution, False, origins.device)
        pts = (origins.unsqueeze(-2) + depths * dirs.unsqueeze(-2)).reshape(2, -1, 3)
        out = G.sample_planes(pts, planes)
        n_rays = origins.shape[1]
        _, _, weights = march(out["rgb"].reshape(2, n_rays, -1, 32), out["sigma"].reshape(2, n_rays, -1, 1), depths,
                              r.white_back)
        fine = importance_depths(depths, weights, r.depth_resolution_importance, deterministic=True)
        compiled = cpu.importance(depths, out["sigma"].reshape(2, n_rays, -1, 1), r.depth_resolution_importance,
                                  True, None)
    assert (compiled is not None) == X86_AVX2  # the compiled sampler wherever kernels can be built
    for depths_fine in (fine, compiled) if compiled is not None else (fine,):
        got = depths_fine[:, torch.from_numpy(ref["ray_subset_index"]), :, 0].numpy()
        assert np.abs(got - ref["depths_fine_subset_psi0p7"]).max() < 1e-5


@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize(("coarse", "fine"), [(48, 48), (4, 3), (17, 9)])
def test_compiled_importance_depths_match_the_pytorch_ones(deterministic, coarse, fine):
    """eg3d_importance (kernels/field_kernel.c) against composite_weights + importance_depths: random densities,
    empty rays, opaque rays and rays with all their weight in the last interval (the original's off-by-one)."""
    if not X86_AVX2:
        pytest.skip("compiled kernels are x86-64 AVX2 only")
    from eg3d_core.rendering.marcher import composite_weights

    torch.manual_seed(0)
    n, rays = 2, 300
    depths = stratified_depths(n, rays, 2.25, 3.3, coarse, not deterministic, torch.device("cpu"))
    densities = torch.randn(n, rays, coarse, 1) * 4
    densities[:, :50] = -30  # empty
    densities[:, 50:100] = 60  # opaque from the first interval
    densities[:, 100:150] = -30
    densities[:, 100:150, -2:] = 60  # all weight in the last interval
    u = None if deterministic else torch.rand(n * rays, fine)
    want = importance_depths(depths, composite_weights(densities, depths), fine, deterministic, u)
    got = native.importance(depths, densities, fine, deterministic, u)
    assert got.shape == want.shape == (n, rays, fine, 1)
    assert (got - want).abs().max() < 1e-5
    last_mid = 0.5 * (depths[:, 100:150, -3, 0] + depths[:, 100:150, -2, 0])  # per ray (jittered in random mode)
    assert (got[:, 100:150, :, 0].amax(dim=-1) <= last_mid + 1e-6).all()


def test_importance_sampling_never_reaches_last_bin():
    """The original's off-by-one: all weight in the last interval still keeps samples below the last midpoint."""
    s = 48
    depths = torch.linspace(2.25, 3.3, s).reshape(1, 1, s, 1)
    weights = torch.zeros(1, 1, s - 1, 1)
    weights[..., -1, :] = 1
    fine = importance_depths(depths, weights, 48, deterministic=True)
    mids = 0.5 * (depths[0, 0, 1:, 0] + depths[0, 0, :-1, 0])
    assert float(fine.max()) <= float(mids[s - 3]) + 1e-6
    assert abs(float(fine.max()) - 3.266487) < 1e-4  # value observed in the original


def test_march_white_background_and_depth_clamp():
    depths = torch.linspace(1.0, 2.0, 8).reshape(1, 1, 8, 1)
    colors = torch.zeros(1, 1, 8, 3)
    densities = torch.full((1, 1, 8, 1), -100.0)  # empty space
    rgb, depth, weights = march(colors, densities, depths, white_back=True)
    assert torch.allclose(rgb, torch.ones_like(rgb), atol=1e-4)  # transparent ray -> white
    assert 1.0 <= float(depth) <= 2.0
    assert float(weights.sum()) < 1e-4


def test_fast_plane_sampling_matches_grid_sample():
    """Points inside, on the edges of and outside the box (zero padding), several batch items.
    Tolerance 1e-5: both are bilinear interpolations of unit-variance texels; only the rounding of the
    interpolation weights differs (coordinates are offset by one texel for the zero border)."""
    from eg3d_core.rendering.triplane import sample_planes, sample_planes_reference

    torch.manual_seed(0)
    planes = torch.randn(2, 3, 8, 16, 16)
    coords = (torch.rand(2, 4000, 3) * 2 - 1) * 0.8
    edges = torch.tensor([[0.5, 0.5, 0.5], [-0.5, -0.5, -0.5], [0.49999, 0.3, -0.49999], [0.52, 0.1, 0.1],
                          [-0.52, 0.1, 0.1], [0.47, 0.47, 0.47], [0.0, 0.0, 0.0], [0.5, -0.5, 0.5], [3.0, -4.0, 9.0]])
    coords[:, :len(edges)] = edges
    for box_warp in (1.0, 1.6):
        fast = sample_planes(planes, coords, box_warp)
        ref = sample_planes_reference(planes, coords, box_warp)
        assert fast.shape == ref.shape == (2, 4000, 8)
        assert (fast - ref).abs().max() < 1e-5
    wide = torch.randn(2, 3, 8, 12, 20)  # non-square planes: x and y texel grids differ
    assert (sample_planes(wide, coords, 1.0) - sample_planes_reference(wide, coords, 1.0)).abs().max() < 1e-5
    assert torch.equal(sample_planes(planes, coords, 1.0)[:, 8], torch.zeros(2, 8))  # far outside reads zeros


def test_softplus_matches_torch():
    from eg3d_core.networks.layers import softplus

    x = torch.linspace(-40, 40, 10001)
    assert (softplus(x) - torch.nn.functional.softplus(x)).abs().max() < 1e-5


def _cars_field(G):
    """The tiny cars fixture's planes (psi 0.7) and a field over them, plus its reference cameras' rays."""
    from eg3d_core.rendering.triplane import plane_table

    ref = reference("tiny_cars128")
    r = G.config.rendering
    with torch.no_grad():
        planes = G.planes(G.mapping(torch.from_numpy(ref["z"]), torch.from_numpy(ref["c_cond"]), 0.7, 14))
    table = plane_table(planes)
    origins, dirs = sample_rays(torch.from_numpy(ref["c_render"]), 24)
    return (lambda pts: G.sample_planes(pts, planes, table=table)), origins, dirs, r


@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize("workers", [1, 2])
def test_chunked_renderer_matches_reference(cars_generator, monkeypatch, deterministic, workers):
    """Chunked rendering (colours composited unsorted, several chunks, serial or parallel workers) against the plain
    all-rays path: same random draws, same results up to rounding (white background, batch of two)."""
    from eg3d_core.rendering import renderer

    field, origins, dirs, r = _cars_field(cars_generator)
    monkeypatch.setattr(renderer, "CHUNK_POINTS", 5000)  # ~8 chunks of the 2 x 576 rays
    args = (origins, dirs, r.ray_start, r.ray_end, r.depth_resolution, r.depth_resolution_importance, r.white_back,
            deterministic)
    with torch.no_grad():
        torch.manual_seed(3)
        want = renderer.render_rays_reference(field, *args)
        torch.manual_seed(3)
        got = renderer.render_rays(field, *args, workers=workers)
        torch.manual_seed(4)
        coarse_only = renderer.render_rays(field, *args[:5], 0, *args[6:], workers=workers)
        torch.manual_seed(4)
        coarse_ref = renderer.render_rays_reference(field, *args[:5], 0, *args[6:])
    for a, b in zip(got + coarse_only, want + coarse_ref, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max() < 1e-5


def test_parallel_rendering_leaves_thread_settings_alone(cars_generator):
    import threading

    field, origins, dirs, r = _cars_field(cars_generator)
    before = torch.get_num_threads()
    with torch.no_grad():
        from eg3d_core.rendering.renderer import render_rays

        render_rays(field, origins, dirs, r.ray_start, r.ray_end, 8, 8, r.white_back, workers=2)
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert torch.get_num_threads() == before and seen == [before]


def test_decoder_inference_path_matches_autograd_path(cars_generator):
    """The no-grad decoder (oneDNN products, in-place activations) equals the autograd one (addmm, out of place)."""
    torch.manual_seed(0)
    features = torch.randn(2, 500, 32) * 3
    with torch.no_grad():
        fast = cars_generator.decoder(features)
    plain = cars_generator.decoder(features.clone().requires_grad_(True))
    assert plain["rgb"].requires_grad
    for key in ("sigma", "rgb"):
        assert (fast[key] - plain[key].detach()).abs().max() < 1e-5, key


def test_softplus_linear_and_fused_sigmoid_match_float64():
    from eg3d_core.networks.layers import linear, softplus_linear

    torch.manual_seed(0)
    x, w, b = torch.randn(5000, 32) * 2, torch.randn(64, 32) / 4, torch.randn(64) * 3
    exact = torch.nn.functional.softplus(x.double() @ w.double().t() + b.double())
    for grad in (False, True):  # oneDNN's fused path without autograd, addmm + logaddexp with it
        with torch.set_grad_enabled(grad):
            got = softplus_linear(x, w, b)
            sig = linear(x, w, b, sigmoid=True)
        assert (got.double() - exact).abs().max() < 2e-5 * (1 + exact.abs().max())
        assert (sig.double() - torch.sigmoid(x.double() @ w.double().t() + b.double())).abs().max() < 1e-6
    # Pre-activations beyond the fused sigmoid's range (~87) take the plain path instead of returning inf.
    big = softplus_linear(x, w, b + 200)
    assert torch.isfinite(big).all()
    assert (big.double() - torch.nn.functional.softplus(x.double() @ w.double().t() + b.double() + 200)).abs().max() < 1e-3


def test_helper_threads_only_where_the_caller_may_spread_work():
    import threading

    from eg3d_core.rendering.renderer import render_rays
    from eg3d_core.runtime import may_spread_work, spread_work

    def render_from(thread_body, meet: int = 1) -> set[str]:
        names: set[str] = set()
        seen = threading.Condition()

        def field(points):
            # With ``meet`` > 1 a thread's first chunk waits (up to 10 s) until that many threads have taken one, so
            # that one worker cannot take every chunk before the other has started on a loaded machine.
            with seen:
                first = threading.current_thread().name not in names
                names.add(threading.current_thread().name)
                seen.notify_all()
                if first:
                    seen.wait_for(lambda: len(names) >= meet, timeout=10)
            return {"sigma": torch.zeros(*points.shape[:2], 1), "rgb": torch.zeros(*points.shape[:2], 4)}

        origins, dirs = torch.zeros(1, 4000, 3), torch.tensor([0.0, 0.0, 1.0]).expand(1, 4000, 3)
        def render():
            with torch.no_grad():  # grad mode is per thread
                render_rays(field, origins, dirs, 0.1, 2.0, 16, 16, False)

        t = threading.Thread(target=thread_body, args=(render,), name="caller")
        t.start()
        t.join()
        return names

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert render_from(lambda render: render()) == {"caller"}  # e.g. a server's request thread

        def inside(render):
            with spread_work():
                assert may_spread_work()
                render()
            assert not may_spread_work()

        assert render_from(inside, meet=2) == {"eg3d-render-0", "eg3d-render-1"}  # the viewer's render thread
    finally:
        torch.set_num_threads(threads)
    assert may_spread_work()  # the main thread always may


@pytest.mark.parametrize("deterministic", [True, False])
def test_compiled_compositing_matches_the_pytorch_one(cars_generator, monkeypatch, deterministic):
    """The chunk compositing of coarse + fine samples in one compiled loop (eg3d_march in kernels/field_kernel.c:
    merged by depth, no sorting of colours) against the PyTorch operations, with unsorted fine samples in the random
    mode."""
    from eg3d_core.rendering import renderer

    field, origins, dirs, r = _cars_field(cars_generator)
    args = (origins, dirs, r.ray_start, r.ray_end, r.depth_resolution, r.depth_resolution_importance, r.white_back,
            deterministic)
    calls = []
    compiled = cpu.march

    def counting(*a: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        result = compiled(*a)
        calls.append(result is not None)
        return result

    with torch.no_grad():
        monkeypatch.setattr(cpu, "march", counting)
        torch.manual_seed(5)
        fast = renderer.render_rays(field, *args, workers=2)
        monkeypatch.setattr(cpu, "march", lambda *a: None)
        torch.manual_seed(5)
        plain = renderer.render_rays(field, *args, workers=2)
    assert calls and all(calls) == X86_AVX2  # the compiled loop ran wherever kernels can be built
    for a, b in zip(fast, plain, strict=True):
        # Float32 rounding of the two summation orders along ~96 samples, relative to the results' magnitude.
        torch.testing.assert_close(a, b, atol=5e-6 * (1 + b.abs().max().item()), rtol=0)


def test_plane_tables_are_kept_per_live_unchanged_tensor():
    import copy
    import pickle

    from eg3d_core.rendering.triplane import PlaneTables, plane_table

    tables = PlaneTables(2)
    a, b, c = (torch.randn(1, 3, 8, 6, 5) for _ in range(3))
    ta = tables(a)
    assert torch.equal(ta, plane_table(a)) and tables(a) is ta  # built once, then kept
    tb = tables(b)
    assert tables(a) is ta and tables(b) is tb  # two tensors alternate without rebuilding
    twin = a.clone()
    assert tables(twin) is not ta  # the same values in another tensor: its own entry (identity, not contents)
    assert tables(a) is not ta  # ... which pushed the oldest (a) out: size 2
    a.mul_(2)  # modified in place: the kept table is stale
    ta = tables(a)
    assert torch.equal(ta, plane_table(a))
    d = torch.randn(1, 3, 8, 6, 5)
    tables(d)
    del d  # its table goes with it, so the next new tensor does not push out a
    tables(c)
    assert tables(a) is ta
    assert copy.deepcopy(tables)._entries == [] and pickle.loads(pickle.dumps(tables))._entries == []


def test_rendering_the_same_planes_again_sees_in_place_changes(cars_generator):
    """The generator keeps the plane table of planes it renders; a change to the planes in place must still show."""
    G = cars_generator
    ref = reference("tiny_cars128")
    c = torch.from_numpy(ref["c_render"])
    with torch.no_grad():
        planes = G.planes(G.mapping(torch.from_numpy(ref["z"]), torch.from_numpy(ref["c_cond"])))
        first, _ = G.render(planes, c, 16)
        again, _ = G.render(planes, c, 16)
        planes.mul_(0.5)
        changed, _ = G.render(planes, c, 16)
        fresh, _ = G.render(planes.clone(), c, 16)
    assert torch.equal(first, again)
    assert torch.equal(changed, fresh) and not torch.equal(changed, first)
