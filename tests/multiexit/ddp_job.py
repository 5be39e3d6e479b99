"""A training job for tests/multiexit/test_ddp.py, run as a script (Lightning's DDP launcher
re-runs this file once per extra rank): ``python ddp_job.py OUT [multiexit.train flags]``.

It parses the flags with the real CLI parser, trains on the synthetic set of the tests'
conftest (300 training and 101 test images: 101 is odd, so padding would show), and writes
``OUT/rank<r>.json`` (test count and accuracies as this rank saw them after the reduction)
and one line per call of ``export_run`` to ``OUT/export_calls.txt`` (the calling rank).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import synthetic_arrays  # noqa: E402

import multiexit.train as train_cli  # noqa: E402

N_TRAIN, N_TEST = 300, 101


def main() -> None:
    out = Path(sys.argv[1])
    cfg = train_cli.parse_args(sys.argv[2:])
    export_run = train_cli.export_run
    rank = {"value": 0}

    def recording_export_run(*args, **kwargs):
        with open(out / "export_calls.txt", "a", encoding="utf-8") as handle:
            handle.write(f"{rank['value']}\n")
        return export_run(*args, **kwargs)

    train_cli.export_run = recording_export_run
    original_run_stage = train_cli.run_stage

    def run_stage(*args, **kwargs):
        result = original_run_stage(*args, **kwargs)
        rank["value"] = result[0].trainer.global_rank
        return result

    train_cli.run_stage = run_stage
    module = train_cli.train(cfg, arrays=synthetic_arrays(N_TRAIN, N_TEST))
    record = {
        "rank": module.trainer.global_rank,
        "world_size": module.trainer.world_size,
        "test_count": module.test_count,
        "test_accuracy": module.test_accuracy,
    }
    (out / f"rank{record['rank']}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
