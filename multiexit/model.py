"""VGG-16 with BatchNorm for 32x32 inputs and 17 exits (paper Sec. VI-B).

The backbone is data: ``VGG16_CFG`` lists output channels for a 3x3 conv (+BN+ReLU) and
``"M"`` for a 2x2 max-pool, the CIFAR layout with 13 convs and 4 pools (no 5th pool, so the
last map is 2x2). The paper adds "a classifier after each CL or pooling layer": exit i sits
after the i-th of the 17 cfg layers; exits 1..16 have a small head, exit 17 is the main
branch's classifier. Layer names (``conv1_1``, ..., ``pool4``, ..., ``conv5_3``) and the exit
table below are computed from the cfg (:func:`exit_table`).

Exit table for ``width=1.0, head="conv_pool"`` (input 3x32x32; MACs count conv and linear
multiply-accumulates of the prefix up to the exit plus that exit's head)::

    exit layer   output (C,H,W)  params     MACs
       1 conv1_1 (64, 32, 32)       244,043     30,101,504
       2 conv1_2 (64, 32, 32)       281,035     67,850,240
       ...       (docs/multiexit.md has all 17 rows)
      17 conv5_3 (512, 2, 2)     14,724,042    313,201,664

Head designs (``head=``), both documented in docs/multiexit.md:

- ``"conv_pool"`` (default; after MSDNet): 3x3 stride-2 conv + BN + ReLU blocks with
  ``128 * width`` channels while the map is larger than 4x4 (at most two), then the
  ``pool_linear`` reduction. Learned features for the shallow exits; 2.8 M parameters for
  all 16 heads together at width 1.
- ``"conv_pool_wide"``: the same with ``256 * width`` channels; ``"conv_pool_deep"``: one
  stride-1 3x3 conv block with ``128 * width`` channels before the stride-2 blocks (shallow
  exits only). Compared with their accuracy and latency in docs/multiexit.md.
- ``"pool_linear"`` (after SDN): a learned mix of max- and average-pooling down to at most
  4x4, then one linear layer. Almost free, weaker at shallow exits.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from grle_common.cli import bounded, run_cli

# 13 convs and 4 max-pools: the CIFAR VGG-16 layout (torchvision's "D" without the 5th pool).
VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
)  # fmt: skip

# Conv heads: (hidden channels at width 1, stride-1 convs before the stride-2 blocks).
CONV_HEADS: dict[str, tuple[int, int]] = {
    "conv_pool": (128, 0),
    "conv_pool_wide": (256, 0),
    "conv_pool_deep": (128, 1),
}
HEADS: tuple[str, ...] = (*CONV_HEADS, "pool_linear")
CIFAR_INPUT = (3, 32, 32)  # channels, height, width of a CIFAR-10 image


def layer_names(cfg: Sequence[int | str]) -> list[str]:
    """Names of the cfg layers: ``conv<block>_<k>`` for convs, ``pool<block>`` for pools."""
    names, block, k = [], 1, 1
    for item in cfg:
        if item == "M":
            names.append(f"pool{block}")
            block, k = block + 1, 1
        else:
            names.append(f"conv{block}_{k}")
            k += 1
    return names


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _conv_bn_relu(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class MixedPool(nn.Module):
    """SDN's feature reduction: ``a * maxpool + (1 - a) * avgpool`` with a learned scalar a."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.alpha = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mx = nn.functional.max_pool2d(x, self.kernel)
        av = nn.functional.avg_pool2d(x, self.kernel)
        return self.alpha * mx + (1 - self.alpha) * av


def _pool_linear(in_channels: int, size: int, num_classes: int) -> list[nn.Module]:
    """SDN's reduction: mixed max/avg pooling down to at most 4x4, flatten, one linear layer."""
    kernel = max(1, size // 4)
    out = size // kernel
    pool: nn.Module = MixedPool(kernel) if kernel > 1 else nn.Identity()
    return [pool, nn.Flatten(), nn.Linear(in_channels * out * out, num_classes)]


def make_head(
    kind: str, *, in_channels: int, size: int, num_classes: int, width: float
) -> nn.Sequential:
    """Build an exit head for a ``in_channels x size x size`` feature map.

    Raises:
        ValueError: ``kind`` is not one of :data:`HEADS`.
    """
    if kind in CONV_HEADS:
        base, plain = CONV_HEADS[kind]
        hidden = _scaled(base, width)
        layers: list[nn.Module] = []
        ch = in_channels
        if size > 4:  # the deep variant: stride-1 convs at the map's own resolution first
            for _ in range(plain):
                layers.append(_conv_bn_relu(ch, hidden))
                ch = hidden
        downsampling = 0
        while size > 4 and downsampling < 2:
            layers.append(_conv_bn_relu(ch, hidden, stride=2))
            ch, size, downsampling = hidden, (size + 1) // 2, downsampling + 1
        return nn.Sequential(*layers, *_pool_linear(ch, size, num_classes))
    if kind == "pool_linear":
        return nn.Sequential(*_pool_linear(in_channels, size, num_classes))
    raise ValueError(f"Unknown exit head {kind!r}; choose one of {', '.join(HEADS)}.")


def _main_classifier(in_channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes))


class ExitModule(nn.Module):
    """Prefix up to exit i plus head i: exactly what a server runs for a task exiting at i.

    Shares parameters with the model it came from.
    """

    def __init__(self, prefix: Sequence[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.prefix = nn.Sequential(*prefix)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.prefix(x))


class VGG16MultiExit(nn.Module):
    """VGG-16-BN backbone (``features``), 16 exit heads (``heads``) and the main classifier.

    ``model(x)`` returns the logits of all exits from one pass (list, exit 1 first);
    ``forward_exit(x, i)`` runs only the prefix up to exit i plus head i (1-based).
    """

    def __init__(
        self,
        *,
        cfg: Sequence[int | str] = VGG16_CFG,
        num_classes: int = 10,
        width: float = 1.0,
        head: str = "conv_pool",
        input_size: int = 32,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"Unknown exit head {head!r}; choose one of {', '.join(HEADS)}.")
        self.cfg = tuple(cfg)
        self.head_kind = head
        self.width = width
        self.num_classes = num_classes
        self.exit_layers: list[str] = layer_names(self.cfg)
        self.num_exits = len(self.cfg)
        features: list[nn.Module] = []
        heads: list[nn.Module] = []
        ch, size = 3, input_size
        for i, item in enumerate(self.cfg):
            if item == "M":
                features.append(nn.MaxPool2d(2, 2))
                size //= 2
            else:
                out = _scaled(int(item), width)
                features.append(_conv_bn_relu(ch, out))
                ch = out
            if i < self.num_exits - 1:  # the last layer's exit is the main classifier
                heads.append(
                    make_head(head, in_channels=ch, size=size, num_classes=num_classes, width=width)
                )
        self.features = nn.ModuleList(features)
        self.heads = nn.ModuleList(heads)
        self.classifier = _main_classifier(ch, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    # -- structure -------------------------------------------------------------------------
    def _check_exit(self, i: int) -> None:
        if not 1 <= i <= self.num_exits:
            raise ValueError(f"Exit {i} does not exist; exits are numbered 1..{self.num_exits}.")

    def head_of(self, i: int) -> nn.Module:
        """The head of exit i (1-based); exit ``num_exits`` is the main classifier."""
        self._check_exit(i)
        return self.classifier if i == self.num_exits else self.heads[i - 1]

    def exit_module(self, i: int) -> ExitModule:
        """An ``nn.Module`` computing exactly ``forward_exit(x, i)`` (for timing)."""
        self._check_exit(i)
        return ExitModule(list(self.features[:i]), self.head_of(i))

    def backbone(self) -> nn.ModuleList:
        """The modules trained in stage ``main`` and frozen in stage ``exits``."""
        return nn.ModuleList([self.features, self.classifier])

    # -- forward ---------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Output of every cfg layer (17 maps), one pass."""
        maps = []
        for layer in self.features:
            x = layer(x)
            maps.append(x)
        return maps

    def heads_forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Logits of all exits from the maps of :meth:`forward_features`."""
        return [self.head_of(i + 1)(m) for i, m in enumerate(maps)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.heads_forward(self.forward_features(x))

    def forward_exit(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Logits of exit i only: prefix up to layer i, then head i (1-based)."""
        self._check_exit(i)
        for layer in self.features[:i]:
            x = layer(x)
        return self.head_of(i)(x)

    def forward_main(self, x: torch.Tensor) -> torch.Tensor:
        """The plain main-branch forward (backbone + main classifier) = ``forward_exit(x, 17)``."""
        return self.forward_exit(x, self.num_exits)


def build_vgg16_multiexit(
    *, num_classes: int = 10, width: float = 1.0, head: str = "conv_pool"
) -> VGG16MultiExit:
    """VGG-16-BN with 17 exits for 32x32 inputs; ``width`` scales every channel count.

    Raises:
        ValueError: unknown ``head`` (see :data:`HEADS`) or non-positive ``width``.
    """
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}.")
    return VGG16MultiExit(num_classes=num_classes, width=width, head=head)


class ExitInfo(NamedTuple):
    """One row of the exit table."""

    exit: int  # exit number, 1-based; the last is the main classifier
    layer: str  # backbone layer the exit sits after
    shape: tuple[int, int, int]  # output (C, H, W) of that layer
    params: int  # parameters of prefix + head
    macs: int  # multiply-accumulates of prefix + head (conv and linear layers), one image


def _count_macs(module: nn.Module, x: torch.Tensor) -> int:
    """Conv/linear multiply-accumulates of one forward of ``module`` on a batch of one."""
    total = 0

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total += out.numel() * k
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        module(x)
    finally:
        for h in handles:
            h.remove()
    return total


@torch.no_grad()
def exit_table(model: VGG16MultiExit, input_size: Sequence[int] = CIFAR_INPUT) -> list[ExitInfo]:
    """Exit, layer, output shape, params and MACs of prefix + head, for every exit."""
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, *input_size, device=next(model.parameters()).device)
        maps = model.forward_features(x)
        rows = []
        for i in range(1, model.num_exits + 1):
            module = model.exit_module(i)
            rows.append(
                ExitInfo(
                    exit=i,
                    layer=model.exit_layers[i - 1],
                    shape=tuple(maps[i - 1].shape[1:]),
                    params=sum(p.numel() for p in module.parameters()),
                    macs=_count_macs(module, x),
                )
            )
    finally:
        model.train(was_training)
    return rows


def exit_table_markdown(rows: Sequence[ExitInfo]) -> str:
    """The exit table as a Markdown table (for docs)."""
    lines = [
        "| exit | layer | output (C, H, W) | params (prefix + head) | MACs (prefix + head) |",
        "| ---: | --- | --- | ---: | ---: |",
    ]
    lines += [f"| {r.exit} | {r.layer} | {r.shape} | {r.params:,} | {r.macs:,} |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m multiexit.model [width] [head]``: print the exit table as Markdown."""
    p = argparse.ArgumentParser(
        prog="python -m multiexit.model", description="The exit table of the model, as Markdown."
    )
    p.add_argument(
        "width",
        nargs="?",
        type=bounded(float, low=0, low_open=True),
        default=1.0,
        help="channel multiplier (> 0)",
    )
    p.add_argument("head", nargs="?", choices=HEADS, default="conv_pool", help="exit head design")
    args = p.parse_args(argv)
    print(exit_table_markdown(exit_table(build_vgg16_multiexit(width=args.width, head=args.head))))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
