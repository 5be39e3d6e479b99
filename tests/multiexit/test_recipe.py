"""Training-recipe options: named recipes, weight decay groups, the weight average, flip TTA,
distillation of the exit heads, crop padding and the head designs."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from multiexit.data import TensorLoader
from multiexit.export import load_run
from multiexit.lit import MultiExitModule
from multiexit.loader import augment_batch, draw_augmentation
from multiexit.model import CONV_HEADS, build_vgg16_multiexit, exit_table
from multiexit.train import RECIPES, TrainConfig, parse_args, run_stage, train

from .test_train import WIDTH, config


def _module(**kw) -> MultiExitModule:
    torch.manual_seed(0)
    return MultiExitModule(width=WIDTH, **kw)


# -- named recipes -----------------------------------------------------------------------------
def test_a_recipe_sets_its_flags_and_a_given_flag_still_wins():
    assert parse_args([]) == TrainConfig()  # standard = the defaults
    fast = parse_args(["--recipe", "fast"])
    assert fast.recipe == "fast"
    for name, value in RECIPES["fast"].items():
        assert getattr(fast, name) == value
    assert fast == TrainConfig.for_recipe("fast")
    mine = parse_args(["--recipe", "fast", "--label-smoothing", "0.0"])
    assert mine.label_smoothing == 0.0 and mine == TrainConfig.for_recipe(
        "fast", label_smoothing=0.0
    )


def test_an_unknown_recipe_is_one_sentence(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(["--recipe", "turbo"])
    assert info.value.code == 2
    assert "invalid choice: 'turbo'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="Unknown recipe 'turbo'; choose one of standard, fast"):
        TrainConfig.for_recipe("turbo")


# -- weight decay on exactly the conv and linear weights -------------------------------------
def test_no_decay_on_batchnorm_and_biases_applies_to_exactly_those_parameters():
    module = _module(decay_norm_bias=False, weight_decay=0.1)
    decayed, free = module.parameter_groups()
    names = {id(p): n for n, p in module.model.named_parameters()}
    free_names = sorted(names[id(p)] for p in free["params"])
    decayed_names = sorted(names[id(p)] for p in decayed["params"])
    assert decayed["weight_decay"] == 0.1 and free["weight_decay"] == 0.0
    bn = {
        f"{n}.{w}"
        for n, m in module.model.named_modules()
        if isinstance(m, nn.BatchNorm2d)
        for w in ("weight", "bias")
    }
    trained = {n for n, p in module.model.named_parameters() if p.requires_grad}
    expected_free = {n for n in trained if n in bn or n.endswith(".bias") or n.endswith("alpha")}
    assert set(free_names) == expected_free and len(free_names) == len(expected_free)
    assert set(decayed_names) == trained - expected_free
    assert all(module.model.get_parameter(n).ndim == 4 or "classifier" in n for n in decayed_names)
    # the standard recipe: one group holding every trained parameter, as before recipes
    (one,) = _module(weight_decay=0.1).parameter_groups()
    assert len(one["params"]) == len(trained) and one["weight_decay"] == 0.1


def test_one_sgd_step_without_gradient_shrinks_only_the_decayed_weights():
    module = _module(decay_norm_bias=False, weight_decay=0.1, lr=0.5)
    lr, m, wd = 0.5, 0.9, 0.1
    opt = torch.optim.SGD(module.parameter_groups(), lr=lr, momentum=m, nesterov=True)
    conv = module.model.features[0][0].weight
    bn = module.model.features[0][1].weight
    before_conv, before_bn = conv.detach().clone(), bn.detach().clone()
    for p in module.model.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    opt.step()
    # first Nesterov step: buf = wd*w, update = wd*w + m*buf = (1 + m) wd w
    torch.testing.assert_close(conv.detach(), before_conv * (1 - lr * (1 + m) * wd))
    assert torch.equal(bn.detach(), before_bn)


# -- the moving average -------------------------------------------------------------------------
def test_the_moving_average_follows_its_hand_computed_trace():
    module = _module(ema_decay=0.9)
    w = module.model.features[0][0].weight
    ema = module.ema_model.features[0][0].weight
    module.update_ema()  # first update: a copy
    assert torch.equal(ema, w.detach())
    start = w.detach().clone()
    with torch.no_grad():
        w.add_(1.0)
        module.model.features[0][1].num_batches_tracked.fill_(7)
    module.update_ema()  # n = 1: decay min(0.9, 2 / 11)
    d = 2 / 11
    torch.testing.assert_close(ema, start + (1 - d) * 1.0)
    assert int(module.ema_model.features[0][1].num_batches_tracked) == 7  # integers are copied
    for _ in range(200):
        module.update_ema()
    torch.testing.assert_close(ema, w.detach(), atol=1e-6, rtol=0)  # converges to the weights
    assert module.eval_model is module.ema_model
    assert _module().eval_model is _module().model or _module().ema_model is None


def test_the_moving_average_is_what_is_exported_and_what_stage_exits_starts_from(tmp_path, arrays):
    cfg = config(
        tmp_path, stage="all", epochs_main=2, epochs_exits=1, limit_train=96,
        ema_decay=0.9, export=str(tmp_path / "checkpoints/t"),
    )  # fmt: skip
    module = train(cfg, arrays=arrays)
    model, manifest = load_run(tmp_path / "checkpoints/t")
    exported = model.state_dict()
    averaged = module.ema_model.state_dict()
    raw = module.model.state_dict()
    key = "heads.0.0.0.weight"  # a head weight: trained in stage exits, so raw != average
    assert not torch.allclose(raw[key], averaged[key])
    for k, v in exported.items():
        torch.testing.assert_close(v, averaged[k].to(v.dtype), atol=2e-3, rtol=2e-3)
    # stage exits started from the main stage's average: its frozen backbone equals it
    ckpt = torch.load(tmp_path / "runs/t/main/checkpoints/best.ckpt", weights_only=False)
    main_avg = {
        k.removeprefix("ema_model."): v
        for k, v in ckpt["state_dict"].items()
        if k.startswith("ema_model.features.")
    }
    main_raw = {
        k.removeprefix("model."): v
        for k, v in ckpt["state_dict"].items()
        if k.startswith("model.features.")
    }
    assert any(not torch.equal(main_avg[k], main_raw[k]) for k in main_avg)
    for k, v in main_avg.items():
        assert torch.equal(raw[k], v), k
    last = torch.load(tmp_path / "runs/t/main/checkpoints/last.ckpt", weights_only=False)
    assert last["ema_updates"] == 2 * (96 // 32)  # one update per optimiser step, saved


# -- flip test-time augmentation ----------------------------------------------------------------
def test_tta_changes_only_its_own_column(tmp_path, arrays):
    common = dict(stage="main", epochs_main=1, limit_train=64)
    _, _, plain = run_stage(config(tmp_path / "a", **common), "main", arrays=arrays)
    module, _, with_tta = run_stage(
        config(tmp_path / "b", tta=True, **common), "main", arrays=arrays
    )
    assert with_tta == plain
    a = pd.read_csv(tmp_path / "a/runs/t/main/exit_accuracy.csv")
    b = pd.read_csv(tmp_path / "b/runs/t/main/exit_accuracy.csv")
    assert "accuracy_tta" not in a.columns
    assert list(b.columns) == ["exit", "layer", "accuracy", "accuracy_tta", "params", "macs"]
    pd.testing.assert_frame_equal(a, b.drop(columns="accuracy_tta"))
    # by hand: the mean of the logits of each image and its mirror
    model = module.eval_model.eval()
    loader = TensorLoader(arrays.test_x, arrays.test_y, batch_size=50)
    correct = torch.zeros(model.num_exits)
    with torch.no_grad():
        for x, y in loader:
            both = zip(model(x), model(x.flip(-1)), strict=True)
            correct += torch.tensor([float(((u + v).argmax(1) == y).sum()) for u, v in both])
    assert b.accuracy_tta.tolist() == pytest.approx(
        (correct / len(arrays.test_y)).tolist(), abs=1e-6
    )


# -- distillation of the heads -------------------------------------------------------------------
def test_the_head_loss_mixes_cross_entropy_and_distillation_as_written():
    torch.manual_seed(1)
    z, teacher, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    ce = nn.functional.cross_entropy(z, y)
    plain = _module(stage="exits")
    assert torch.equal(plain.head_loss(z, y, teacher), ce)
    kd = _module(stage="exits", kd_weight=0.5, kd_temperature=2.0)
    assert torch.allclose(kd.head_loss(z, y, z), 0.5 * ce)  # a perfect student: no KL
    p = torch.softmax(teacher / 2, 1)
    kl = (p * (p.log() - torch.log_softmax(z / 2, 1))).sum(1).mean()
    torch.testing.assert_close(kd.head_loss(z, y, teacher), 0.5 * ce + 0.5 * 4 * kl)


# -- augmentation ------------------------------------------------------------------------------
def test_crop_padding_zero_leaves_only_flips():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    aug = draw_augmentation(2, torch.Generator().manual_seed(0), pad=0)
    assert aug.dy.tolist() == [0, 0] and aug.dx.tolist() == [0, 0]
    out = augment_batch(x, aug, pad=0)
    for i in range(2):
        assert torch.equal(out[i], x[i].flip(-1) if aug.flip[i] else x[i])


# -- head designs ------------------------------------------------------------------------------
def test_head_designs_differ_only_where_the_map_is_larger_than_four():
    rows = {h: exit_table(build_vgg16_multiexit(width=0.25, head=h)) for h in CONV_HEADS}
    for i in range(17):
        shallow = rows["conv_pool"][i].shape[1] > 4
        same = {rows[h][i].macs for h in CONV_HEADS}
        assert (len(same) == 3) == shallow, i + 1
    deep = build_vgg16_multiexit(width=0.25, head="conv_pool_deep").heads[0]
    convs = [m for m in deep.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(1, 1), (2, 2), (2, 2)] and convs[0].out_channels == 32
    wide = build_vgg16_multiexit(width=0.25, head="conv_pool_wide").heads[0]
    assert [m.out_channels for m in wide.modules() if isinstance(m, nn.Conv2d)] == [64, 64]


# -- resuming -------------------------------------------------------------------------------------
def test_resuming_with_another_recipe_is_refused_by_its_values_not_its_name(
    tmp_path, arrays, capsys
):
    from grle_common.cli import run_cli
    from multiexit.train import main

    from .test_train import _cli

    train(config(tmp_path, stage="main", epochs_main=1, limit_train=64), arrays=arrays)
    assert run_cli(main, _cli(tmp_path, "--recipe", "fast")) == 2
    err = capsys.readouterr().err
    assert (
        "(main: --label-smoothing 0.1 (was 0.0), --decay-norm-bias False (was True), "
        "--crop-pad 2 (was 4))"
    ) in err  # --batch-size is given, so the recipe's 128 does not apply
    assert run_cli(main, _cli(tmp_path, "--crop-pad", "2", "--ema-decay", "0.9")) == 2
    assert "(main: --ema-decay 0.9 (was 0.0), --crop-pad 2 (was 4))" in capsys.readouterr().err
