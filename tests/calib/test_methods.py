"""calib.methods: method registry, structure discovery, initialisations (fast, on a tiny model)."""
from __future__ import annotations

import pytest
import torch

from calib.methods import (
    METHODS,
    calibrate_method,
    check_method,
    collect_activation_stats,
    search_bp,
    search_budgeted,
)
from calib.blocks import find_blocks
from calib.quant.two_region import TwoRegionSpec
from tests.calib._tiny import tiny_images, tiny_model

torch.set_num_threads(1)  # small tensors; avoids OpenMP spin-waits on a shared machine


def test_method_registry_and_errors():
    assert METHODS == ("minmax", "percentile", "omse", "ptq4sr", "2dquant", "dual_region", "plain_ft", "sa_ft", "oaq",
                       "recon")
    assert check_method(" OAQ ") == "oaq"
    with pytest.raises(ValueError, match="unknown calibration method 'foo'; valid methods: minmax, percentile"):
        check_method("foo")


def test_discovery_roles_and_blocks():
    """Without a graph, calibrate_method captures one: roles come from the layer policy's one rule."""
    net = tiny_model()
    r = calibrate_method(net, tiny_images(), 4, 4, "minmax")
    roles = {l.module: l.role for l in r.layers.values()}
    assert roles == {"head": "head", "body.0.c1": "body", "body.0.c2": "body", "body.1.c1": "body",
                     "body.1.c2": "body", "upsampler.0": "upsampler", "tail": "tail"}
    assert find_blocks(net) == ["body.0", "body.1"]


def test_find_blocks_zoo_models():
    from calib.models.edsr import EDSR
    from calib.models.imdn import build

    assert find_blocks(build(4)) == [f"IMDB{i}" for i in range(1, 7)]
    blocks = find_blocks(EDSR(2, n_resblocks=3, n_feats=8))
    assert blocks == ["body.0", "body.1", "body.2"]


@pytest.mark.parametrize("method", ["minmax", "percentile", "omse", "dual_region"])
def test_init_methods(method):
    net = tiny_model()
    r = calibrate_method(net, tiny_images(), 4, 4, method)
    assert r.method == method and len(r.layers) == 7
    for l in r.layers.values():
        assert (l.bits_a, l.bits_w) == ((8, 8) if l.role != "body" else (4, 4))
        two_region = method == "dual_region" and l.role != "head"
        assert l.act.allocation == ("released" if two_region else "uniform")
        if not two_region:
            assert l.act.code_bits == l.bits_a
    assert r.graph is not None and r.stream_absmax  # captured when not given


def test_allocation_option_and_errors():
    net = tiny_model()
    r = calibrate_method(net, tiny_images(), 4, 4, "dual_region", allocation="budgeted")
    body = [l for l in r.layers.values() if l.role == "body"]
    assert all(l.act.allocation == "budgeted" and l.act.num_codes <= 16 for l in body)
    r = calibrate_method(net, tiny_images(), 4, 4, "dual_region", allocation="paper")
    assert all(l.act.code_bits <= 4 for l in r.layers.values() if l.role == "body")
    with pytest.raises(ValueError, match="dual-region"):
        calibrate_method(net, tiny_images(), 4, 4, "omse", allocation="paper")


def test_searches_do_not_lose_to_their_starting_points():
    net = tiny_model()
    imgs = torch.stack(tiny_images())
    stats = collect_activation_stats(net, ["body.0.c1", "body.0.c2"], [imgs])
    for st in stats.values():
        v = st.samples
        pct = st.observer.spec(4, "released")
        mse = lambda s: float(((s.fake_quant(v) - v) ** 2).mean())  # noqa: E731
        assert mse(search_bp(st, 4, "released")) <= mse(pct) + 1e-12
        bud = search_budgeted(st, 4)
        assert bud.allocation == "budgeted" and sum(bud.counts) == 16
        default = TwoRegionSpec(bud.l, bud.u, st.observer.bp, 4, "budgeted")
        assert mse(bud) <= mse(default) + 1e-12


@pytest.mark.parametrize("method", ["ptq4sr", "2dquant", "plain_ft", "sa_ft", "oaq"])
def test_finetuning_methods_run(method):
    from calib.finetune import FinetuneConfig

    net = tiny_model()
    r = calibrate_method(net, tiny_images(4, 10), 4, 4, method, finetune_config=FinetuneConfig(epochs=3))
    ft = r.settings["finetune"]
    assert [h["group"] for h in ft["history"]][:2] == ["weight", "bounds"]
    assert abs(sum(ft["s_k"]) - 1) < 1e-9 and len(ft["s_k"]) == 2
    if method in ("plain_ft", "ptq4sr", "2dquant"):
        assert ft["s_k"] == [0.5, 0.5]
    assert ft["output_loss"] == ("mse" if method == "2dquant" else "l1")
    for l in r.layers.values():  # specs stay valid after training
        assert l.act.l <= l.act.u


def test_head_reading_the_image_is_exact_on_pixels():
    net = tiny_model()
    imgs = [torch.randint(0, 256, (3, 10, 10)).float() / 255 for _ in range(4)]
    for method in ("dual_region", "omse"):
        head = calibrate_method(net, imgs, 4, 4, method).layers["head"].act
        assert (head.allocation, head.l, head.u, head.bits) == ("uniform", 0.0, 1.0, 8)
        x = torch.arange(256, dtype=torch.float64) / 255
        assert torch.allclose(head.fake_quant(x), x, atol=1e-12)
    head = calibrate_method(net, imgs, 4, 4, "dual_region", exact_image_input=False).layers["head"].act
    assert head.allocation == "released"


@pytest.mark.parametrize("method", ["minmax", "dual_region"])
def test_range_mode_max_uses_the_calibration_extremes(method):
    """``range_mode='max'``: every quantizer's bounds are the extremes over all calibration batches."""
    net = tiny_model()
    imgs = tiny_images()
    convs = [l.module for l in calibrate_method(net, imgs, 4, 4, "minmax").layers.values()]
    stats = collect_activation_stats(net, convs, [torch.stack(imgs[i:i + 2]) for i in range(0, len(imgs), 2)])
    ema = calibrate_method(net, imgs, 4, 4, method)
    mx = calibrate_method(net, imgs, 4, 4, method, range_mode="max")
    assert mx.settings["range"] == "max" and ema.settings["range"] == "ema"
    wider = 0
    for name, layer in mx.layers.items():
        if layer.role == "head":
            continue  # the image input keeps its exact [0, rgb_range] quantizer
        o = stats[layer.module].observer
        assert layer.act.u == pytest.approx(max(o.global_max, 0.0) if method == "minmax" else o.global_max)
        assert layer.act.u >= ema.layers[name].act.u
        wider += layer.act.u > ema.layers[name].act.u
    assert wider > 0
    with pytest.raises(ValueError, match="range must be"):
        calibrate_method(net, imgs, 4, 4, method, range_mode="p99")


def test_search_shrinks_the_range_when_extremes_are_rare():
    """The joint search may clip (l, u): with a long exponential tail, clipping its rarest values buys a
    finer tail step, and the search finds it (its candidates include every unclipped bp-only spec)."""
    from calib.methods import ActStats
    from calib.quant.two_region import MinMaxObserver

    g = torch.Generator().manual_seed(0)
    tail = 1.0 + torch.empty(1000).exponential_(1.0, generator=g)
    x = torch.cat([torch.rand(19000, generator=g), -0.2 * torch.rand(1000, generator=g), tail])
    obs = MinMaxObserver()
    obs.update(x)
    st = ActStats(obs, x)
    found = search_bp(st, 4, "released")
    assert found.signed and found.u < 0.9 * float(x.max())
    mse = lambda s: float(((s.fake_quant(x) - x) ** 2).mean())  # noqa: E731
    unclipped = min(mse(TwoRegionSpec(obs.min, obs.max, bp, 4, "released")) for bp in (0.5, 0.9, 0.99, obs.bp))
    assert mse(found) < unclipped


@pytest.mark.parametrize("allocation", ["released", "budgeted"])
def test_search_takes_a_tensor_that_is_zero_on_every_sample(allocation):
    """A dead ReLU (IMDN ×2/×3's IMDB4.cca.conv_du.1 is 0 on every calibration patch) has no bp candidate
    in (0, max|range|]; the search returns the all-zero-range spec instead of failing on an empty
    candidate list (it did: "min() arg is an empty sequence" in every oaq and recon calibration of those
    checkpoints), and that spec quantizes zeros to zero."""
    from calib.methods import ActStats, init_two_region
    from calib.quant.two_region import MinMaxObserver

    x = torch.zeros(4096)
    obs = MinMaxObserver()
    obs.update(x)
    spec = init_two_region(ActStats(obs, x), 4, allocation, "search")
    assert torch.equal(spec.fake_quant(x), x)
    assert spec.segments()  # the codebook export reads these
