"""Per-exit test accuracy of an exported run: ``python -m multiexit.evaluate checkpoints/<run>``.

Writes the accuracy table (``exit, layer, accuracy, params, macs``) as CSV — by default to
stdout — for any data source (e.g. re-evaluate a run trained on the JPEG pack on the original
CIFAR-10 with ``--source torchvision --cifar-root DIR``). With ``--out`` the CSV goes to that
file (checked for writability before any work) and stdout gets a short summary: the accuracy
of every exit, the file written and the wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

from grle_common.cli import bounded, run_cli
from grle_common.fileio import atomic_write
from multiexit.data import SOURCES, TensorLoader, load_cifar10
from multiexit.errors import DeviceUnavailableError, OutputPathError
from multiexit.export import check_output_dir, load_run
from multiexit.lit import accuracy_frame
from multiexit.model import VGG16MultiExit


@torch.no_grad()
def evaluate_exits(model: VGG16MultiExit, loader: TensorLoader) -> list[float]:
    """Top-1 accuracy of every exit over ``loader`` (model in eval mode, one pass per batch)."""
    model.eval()
    correct = torch.zeros(model.num_exits, dtype=torch.long)
    count = 0
    for x, y in loader:
        outs = model(x)
        correct += torch.stack([(z.argmax(1) == y).sum() for z in outs]).cpu()
        count += len(y)
    return [float(c) / max(count, 1) for c in correct]


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring).

    Raises:
        MultiexitError: ``--device cuda`` without CUDA, an unwritable ``--out``, a missing or
            broken run, no data.
    """
    p = argparse.ArgumentParser(prog="python -m multiexit.evaluate", description=__doc__)
    p.add_argument("run", help="exported run folder (checkpoints/<run>)")
    p.add_argument("--source", choices=SOURCES, default="auto", help="data source")
    p.add_argument("--pack", default=None, help="path of cifar10_jpeg.npz")
    p.add_argument("--cifar-root", default=None, help="torchvision CIFAR-10 root")
    p.add_argument(
        "--batch-size", type=bounded(int, low=1), default=500, help="images per batch (≥ 1)"
    )
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device: cpu, cuda, cuda:1 (default: cuda where available, else cpu)",
    )
    p.add_argument("--out", default=None, help="CSV path (default: print to stdout)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"--device {args.device} needs a CUDA GPU, and torch.cuda.is_available() is False "
            "here; use --device cpu."
        )
    if args.out:
        check_output_dir(Path(args.out).parent, "the folder of --out")
        if Path(args.out).is_dir():
            raise OutputPathError(f"Cannot write --out {args.out} (it is a folder); name a file.")
    model, manifest = load_run(args.run)
    data = load_cifar10(source=args.source, pack_path=args.pack, cifar_root=args.cifar_root)
    device = torch.device(args.device)
    model = model.to(device)
    loader = TensorLoader(data.test_x.to(device), data.test_y, batch_size=args.batch_size)
    frame = accuracy_frame(model, evaluate_exits(model, loader))
    seconds = time.perf_counter() - start
    if not args.out:
        print(f"# {args.run} on {data.source}, test set", file=sys.stderr)
        frame.to_csv(sys.stdout, index=False)
        print(f"# wall time {seconds:.1f} s", file=sys.stderr)
        return 0
    atomic_write(args.out, lambda tmp: frame.to_csv(tmp, index=False))
    print(f"test accuracy of {args.run} on {data.source} ({len(data.test_y)} images):")
    print(" exit  layer     accuracy")
    for r in frame.itertuples():
        print(f" {r.exit:4d}  {r.layer:<8s}  {r.accuracy:.4f}")
    print(f"wrote {args.out}")
    print(f"wall time: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    # upstream deprecations a user cannot act on; the command line only, not in-process callers
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    sys.exit(run_cli(main))
