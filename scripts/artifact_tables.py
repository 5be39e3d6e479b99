"""Print the Markdown tables of docs/artifacts.md from a published run's committed files.

    python scripts/artifact_tables.py checkpoints/vgg16_cpu_ref

Reads ``manifest.json`` and ``latency_cpu_1t/{exit_table,candidates}.csv`` (+ ``.json``) of the
run and ``checkpoints/paper_table1.csv``; prints the run's provenance, the per-exit table
(accuracy, median latency, latency relative to the main branch, candidate) and the comparison
with the paper's Table I at equal relative latency.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from grle_common.cli import run_cli
from profiling.table import read_exit_table

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/artifact_tables.py", description=__doc__)
    p.add_argument("run", help="published run folder, e.g. checkpoints/vgg16_cpu_ref")
    p.add_argument("--latency", default="latency_cpu_1t", help="latency subfolder of the run")
    args = p.parse_args(argv)
    run = Path(args.run)
    manifest = json.loads((run / "manifest.json").read_text())
    table = read_exit_table(run / args.latency / "exit_table.csv", require_sidecar=True)
    chosen = read_exit_table(run / args.latency / "candidates.csv").exits.tolist()
    device = table.devices[0]
    latency = table.latency_ms(device)
    relative = latency / latency[-1]
    t = manifest.get("training", {})
    m = table.metadata["measurement"]
    print(
        f"- run `{run}`: data {manifest['data_source']}; width {manifest['config']['width']}, "
        f"head `{manifest['config']['head']}`; {t.get('epochs_main')} + {t.get('epochs_exits')} "
        f"epochs on {t.get('limit_train') or 'all'} training images, batch {t.get('batch_size')}, "
        f"seed {t.get('seed')}; weights {manifest['weights']['dtype']}, "
        f"{manifest['weights']['bytes'] / 1e6:.1f} MB, sha256 `{manifest['weights']['sha256'][:16]}…`"
    )
    print(
        f"- latency: {device}, {table.metadata['devices'][device].get('timing_mode')}, batch "
        f"{m['batch_size']}, {m['dtype']}, median of {m['repeats']} calls after {m['warmup']} "
        f"warm-up calls, interleaved: {m.get('interleave')}\n"
    )
    print(f"| exit | layer | accuracy | latency (ms, {device}) | relative | candidate |")
    print("| ---: | --- | ---: | ---: | ---: | :---: |")
    for e, layer, a, ms, r in zip(
        table.exits, table.layers, table.accuracy, latency, relative, strict=True
    ):
        mark = "✓" if e in chosen else ""
        print(f"| {e} | {layer} | {a:.4f} | {ms:.2f} | {r:.3f} | {mark} |")
    paper = read_exit_table(REPO / "checkpoints" / "paper_table1.csv")
    paper_rel = np.mean([paper.latency_ms(d) / paper.latency_ms(d)[-1] for d in paper.devices], 0)
    print(
        "\n| Table I exit | paper accuracy | paper relative latency | ours at that exit "
        "(accuracy, relative) | best of ours within that relative latency |"
    )
    print("| ---: | ---: | ---: | ---: | ---: |")
    for e, a, r in zip(paper.exits, paper.accuracy, paper_rel, strict=True):
        i = int(np.flatnonzero(table.exits == e)[0])
        within = np.flatnonzero(relative <= r + 1e-12)
        best = within[np.argmax(table.accuracy[within])] if len(within) else None
        best_text = (
            f"exit {table.exits[best]}: {table.accuracy[best]:.4f}" if best is not None else "none"
        )
        print(
            f"| {e} | {a:.3f} | {r:.3f} | {table.accuracy[i]:.4f}, {relative[i]:.3f} | {best_text} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
