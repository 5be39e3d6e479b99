"""Training and evaluation throughput of the multi-exit VGG-16, and a short real run.

Throughput (images/s, median over timed batches after warm-up, device synchronised):

- ``train main``: loader (on-device crop/flip/normalise) + forward + backward + SGD step of
  the backbone and main classifier (stage ``main``);
- ``train exits``: no-grad backbone pass + the 16 heads' forward/backward/Adam step;
- ``eval``: all 17 exits in one pass, no grad.

On a GPU: bf16 autocast and channels-last, data resident on the device (the training setup).

``--real-run`` then trains stage ``main`` on the CIFAR-10 pack for a fraction of an epoch
through ``multiexit.train`` (the same code path as the CLI) and prints the training loss at
the start and at the end and the validation/test accuracy of exit 17.

    python benchmarks/bench_train.py --width 0.25 --batch-size 64
    python benchmarks/bench_train.py --width 0.25 --real-run --fraction 0.25
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from grle_common.cli import bounded
from multiexit.data import TensorLoader
from multiexit.model import build_vgg16_multiexit
from multiexit.train import TrainConfig, run_stage


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, batches, device: torch.device, warmup: int, steps: int) -> float:
    """Median images/s of ``step(x, y)`` over ``steps`` batches after ``warmup`` batches."""
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    _sync(device)
    rates = []
    for _ in range(steps):
        t0 = time.perf_counter()
        x, y = next(it)
        step(x, y)
        _sync(device)
        rates.append(len(y) / (time.perf_counter() - t0))
    return statistics.median(rates)


def throughput(width: float, batch_size: int, warmup: int, steps: int) -> dict[str, float]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    n = batch_size * (warmup + steps)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g).to(device)
    labels = torch.randint(0, 10, (n,), generator=g).to(device)
    loader = TensorLoader(images, labels, batch_size=batch_size, shuffle=True, augment=True,
                          channels_last=gpu)  # fmt: skip
    model = build_vgg16_multiexit(width=width).to(device)
    if gpu:
        model = model.to(memory_format=torch.channels_last)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if gpu else contextlib.nullcontext()
    loss_fn = torch.nn.CrossEntropyLoss()
    backbone = [p for m in model.backbone() for p in m.parameters()]
    sgd = torch.optim.SGD(backbone, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    adam = torch.optim.Adam(model.heads.parameters(), lr=1e-3)

    def train_main(x, y):
        with amp:
            loss = loss_fn(model.forward_main(x), y)
        sgd.zero_grad(set_to_none=True)
        loss.backward()
        sgd.step()

    def train_exits(x, y):
        with amp:
            with torch.no_grad():
                maps = model.forward_features(x)[:-1]
            loss = sum(loss_fn(h(m), y) for h, m in zip(model.heads, maps, strict=True))
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()

    @torch.no_grad()
    def evaluate(x, y):
        with amp:
            outs = model(x)
        torch.stack([(o.argmax(1) == y).sum() for o in outs]).cpu()

    model.train()
    out = {"train main": _timed(train_main, loader, device, warmup, steps)}
    model.backbone().eval()
    out["train exits"] = _timed(train_exits, loader, device, warmup, steps)
    model.eval()
    out["eval (17 exits)"] = _timed(evaluate, loader, device, warmup, steps)
    return out


def real_run(width: float, batch_size: int, fraction: float, seed: int, runs_dir: str) -> None:
    cfg = TrainConfig(
        stage="main", run=f"bench_w{width}_s{seed}", runs_dir=runs_dir, width=width,
        batch_size=batch_size, epochs_main=1, limit_train_batches=fraction, seed=seed,
        source="pack", progress=False, log_every_n_steps=5, resume=False,
    )  # fmt: skip
    t0 = time.perf_counter()
    module, dm, acc = run_stage(cfg, "main")
    wall = time.perf_counter() - t0
    metrics = pd.concat(
        pd.read_csv(f)
        for f in sorted(Path(runs_dir, cfg.run, "main").glob("version_*/metrics.csv"))
    )
    steps = metrics.dropna(subset=["train_loss_step"])
    k = max(1, len(steps) // 5)
    first, last = steps.train_loss_step[:k].mean(), steps.train_loss_step[-k:].mean()
    val = metrics.val_acc.dropna().iloc[-1]
    n_steps = int(steps.step.max()) + 1
    print(f"data: {dm.source_description}")
    print(f"real run: width {width}, batch {batch_size}, seed {seed}, {fraction:g} of an epoch "
          f"= {n_steps} steps (~{n_steps * batch_size} images), wall {wall:.0f} s incl. eval")  # fmt: skip
    print(f"train loss: first {k} logged steps {first:.3f} -> last {k} logged steps {last:.3f}")
    print(f"exit 17 accuracy: validation {val:.4f} (5000 held-out train images), "
          f"test {acc[16]:.4f} (10000 test images); chance 0.1")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--width", type=bounded(float, low=0, low_open=True), default=1.0, help="channel multiplier"
    )
    p.add_argument("--batch-size", type=bounded(int, low=1), default=256, help="images per batch")
    p.add_argument("--warmup", type=bounded(int, low=0), default=3, help="untimed batches first")
    p.add_argument(
        "--steps", type=bounded(int, low=1), default=10, help="timed batches (median reported)"
    )
    p.add_argument("--real-run", action="store_true", help="also train on the pack briefly")
    p.add_argument(
        "--fraction",
        type=bounded(float, low=0, high=1, low_open=True),
        default=0.25,
        help="fraction of an epoch to train",
    )
    p.add_argument("--seed", type=bounded(int, low=0), default=0, help="seed of the real run")
    p.add_argument("--runs-dir", default=None, help="where the real run writes (default: tmp)")
    args = p.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"width {args.width}, batch {args.batch_size}, median of {args.steps} batches")  # fmt: skip
    for name, rate in throughput(args.width, args.batch_size, args.warmup, args.steps).items():
        print(f"{name:>16}: {rate:10.1f} images/s")
    if args.real_run:
        with tempfile.TemporaryDirectory() as tmp:
            real_run(args.width, args.batch_size, args.fraction, args.seed, args.runs_dir or tmp)


if __name__ == "__main__":
    main()
