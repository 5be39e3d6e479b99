"""The 17-exit VGG-16: names, shapes, exits, sizes."""

from __future__ import annotations

import pytest
import torch

from multiexit.model import HEADS, build_vgg16_multiexit, exit_table

WIDTH = 1 / 16  # channel multiplier of the test models

LAYERS = [
    "conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2",
    "conv3_1", "conv3_2", "conv3_3", "pool3", "conv4_1", "conv4_2", "conv4_3", "pool4",
    "conv5_1", "conv5_2", "conv5_3",
]  # fmt: skip
# (C, H, W) after each layer at width 1/16: 64/16 = 4 channels, ..., 512/16 = 32 channels
SHAPES = [
    (4, 32, 32), (4, 32, 32), (4, 16, 16), (8, 16, 16), (8, 16, 16), (8, 8, 8),
    (16, 8, 8), (16, 8, 8), (16, 8, 8), (16, 4, 4), (32, 4, 4), (32, 4, 4), (32, 4, 4),
    (32, 2, 2), (32, 2, 2), (32, 2, 2), (32, 2, 2),
]  # fmt: skip


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("head", HEADS)
def test_seventeen_exits_with_documented_layers_and_shapes(head, x):
    torch.manual_seed(0)
    model = build_vgg16_multiexit(width=WIDTH, head=head).eval()
    assert model.num_exits == 17
    assert model.exit_layers == LAYERS
    table = exit_table(model)
    assert [r.layer for r in table] == LAYERS
    assert [r.shape for r in table] == SHAPES
    outs = model(x)
    assert len(outs) == 17
    assert all(o.shape == (3, 10) for o in outs)


@pytest.mark.parametrize("head", HEADS)
def test_prefix_plus_head_equals_all_exits_pass(head, x):
    torch.manual_seed(1)
    model = build_vgg16_multiexit(width=WIDTH, head=head, num_classes=7).eval()
    with torch.no_grad():
        outs = model(x)
        for i in range(1, 18):
            single = model.forward_exit(x, i)
            assert torch.allclose(single, outs[i - 1], rtol=0, atol=1e-6), f"exit {i}"
            assert torch.equal(model.exit_module(i)(x), single), f"exit_module {i}"
        assert torch.equal(model.forward_exit(x, 17), model.forward_main(x))
        # main branch spelled out by hand: all 17 layers, then the classifier
        h = x
        for layer in model.features:
            h = layer(h)
        assert torch.equal(model.classifier(h), model.forward_exit(x, 17))


def test_exit_module_shares_parameters():
    model = build_vgg16_multiexit(width=WIDTH)
    mod = model.exit_module(3)
    own = {id(p) for p in model.parameters()}
    assert all(id(p) in own for p in mod.parameters())
    # prefix = conv1_1, conv1_2, pool1 plus head 3
    assert len(mod.prefix) == 3 and mod.head is model.heads[2]


def test_exit_table_params_and_macs_by_hand():
    small = exit_table(build_vgg16_multiexit(width=WIDTH))
    # exit 1, conv_pool: conv1_1 3->4 (108 weights + 8 BN); head conv 4->8 s2 (288 + 16),
    # conv 8->8 s2 (576 + 16), mixed pool 8x8 -> 4x4 (1 weight), linear 8*4*4 -> 10 (1290)
    assert small[0].params == 116 + 304 + 592 + 1 + 1290
    # MACs: conv1_1 32*32*4*27; head 16*16*8*36 + 8*8*8*72; linear 128*10
    assert small[0].macs == 110_592 + 73_728 + 36_864 + 1280
    full = exit_table(build_vgg16_multiexit(width=1.0))
    convs = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256)]
    convs += [(256, 512)] + [(512, 512)] * 5
    params = sum(i * o * 9 + 2 * o for i, o in convs) + 512 * 10 + 10
    assert full[16].params == params == 14_724_042
    sizes = [32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2]
    assert (
        full[16].macs
        == sum(s * s * i * o * 9 for s, (i, o) in zip(sizes, convs, strict=True)) + 5120
    )


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="Unknown exit head 'mlp'; choose one of conv_pool"):
        build_vgg16_multiexit(head="mlp")
    model = build_vgg16_multiexit(width=WIDTH)
    with pytest.raises(ValueError, match="exits are numbered 1..17"):
        model.forward_exit(torch.zeros(1, 3, 32, 32), 18)
    with pytest.raises(TypeError):
        build_vgg16_multiexit(10)  # keyword-only


def test_model_cli_prints_the_exit_table():
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-m", "multiexit.model", "1.0", "conv_pool"],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines()[2:]]
    assert len(rows) == 17 and [int(r[0]) for r in rows] == list(range(1, 18))
    assert [r[1].strip() for r in rows] == LAYERS
    params = [int(r[3].replace(",", "")) for r in rows]
    # exit 17 = the plain VGG-16-BN: 3x3 convs without bias, BatchNorm weight and bias, and a
    # 512 -> 10 linear layer
    cfg = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs = sum(
        9 * c_in * c_out + 2 * c_out for c_in, c_out in zip([3, *cfg[:-1]], cfg, strict=True)
    )
    assert params[16] == convs + 512 * 10 + 10 == 14_724_042
    # exit 1: conv1_1 (+BN), two stride-2 conv blocks of 128 channels (32 -> 16 -> 8), mixed
    # pooling (one learned scalar) to 4x4 and a 128*4*4 -> 10 linear layer
    conv1_1 = 9 * 3 * 64 + 2 * 64
    head = (9 * 64 * 128 + 2 * 128) + (9 * 128 * 128 + 2 * 128) + 1 + (128 * 16 * 10 + 10)
    assert params[0] == conv1_1 + head == 244_043
    assert rows[0][2].strip() == "(64, 32, 32)" and rows[16][2].strip() == "(512, 2, 2)"
    # exit 1 MACs: conv1_1 on 32x32, head convs on 16x16 and 8x8, the linear layer
    macs = 32 * 32 * 64 * 27 + 16 * 16 * 128 * 9 * 64 + 8 * 8 * 128 * 9 * 128 + 10 * 2048
    assert int(rows[0][4].replace(",", "")) == macs == 30_101_504
