#!/usr/bin/env bash
# The GPU reference run, in one command that fits a 10-minute device call (docs/artifacts.md,
# "GPU smoke and reference run"):
#   smoke    scripts/gpu_smoke.py OUT: every GPU path once, and the measured training speed
#   train    the paper recipe, 60 + 25 epochs on all 45,000 training images, one GPU, bf16,
#            test accuracy of every exit, export (safetensors + manifest) to WORK/checkpoints/RUN;
#            if the smoke's speed projects past the time left, fewer epochs (same 60:25 ratio),
#            said as REDUCED in OUT/reference_report.md (FULL_RECIPE=1 forbids that)
#   measure  multiexit.evaluate on the export (a second, plain test-set evaluation), then
#            profiling.measure --gpu 0 (eager, the table the offloading uses) and --cuda-graphs
#   bundle   the run folder as OUT/reference_run.tgz.part-* (< 16 MiB each: a device machine
#            returns at most 8 files of 16 MiB); unpack with
#            cat OUT/reference_run.tgz.part-* | tar -xz -C checkpoints
#
# Usage: scripts/gpu_reference_run.sh OUT [STEP ...]     (default: smoke train measure bundle)
# Environment: PYTHON (default .venv/bin/python if present, else python3); WORK (default
# runs/gpu_reference, git-ignored: a rerun on the same machine resumes training from its
# last.ckpt); RUN (vgg16); EPOCHS_MAIN / EPOCHS_EXITS (default 60 / 25, and no fitting when
# set); RECIPE (standard: multiexit's --recipe; fast is measured only at 10 epochs on the CPU,
# docs/multiexit.md "Training recipes"); CALL_LIMIT_S (600: the device call's limit the run must
# end within); FULL_RECIPE=1;
# GRLE_CIFAR_PACK (default data/cifar10_jpeg.npz when that file exists).
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 OUT [smoke|train|measure|bundle ...]" >&2; exit 2; }
OUT=$(realpath -m "$1")
shift
STEPS=${*:-smoke train measure bundle}
cd "$(dirname "$0")/.."

PY=${PYTHON:-${PY:-}}
if [[ -z $PY ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [[ -z ${GRLE_CIFAR_PACK:-} && -f data/cifar10_jpeg.npz ]]; then
    export GRLE_CIFAR_PACK=$PWD/data/cifar10_jpeg.npz
fi
WORK=${WORK:-runs/gpu_reference}
RUN=${RUN:-vgg16}
RECIPE=${RECIPE:-standard}
EXPORT=$WORK/checkpoints/$RUN
CALL_LIMIT_S=${CALL_LIMIT_S:-600}
mkdir -p "$OUT" "$WORK"
LOG=$OUT/reference.log
REPORT=$OUT/reference_report.md
has() { [[ " $STEPS " == *" $1 "* ]]; }
say() { echo "$*" | tee -a "$LOG"; }

say "# GPU reference run $(date -u +%FT%TZ): steps '$STEPS', python $PY, work $WORK"

if has smoke; then
    # a failed smoke step is in its report; the run goes on so that a partial result comes back
    "$PY" scripts/gpu_smoke.py "$OUT" --work "$WORK/smoke" 2>&1 | tee -a "$LOG" || true
fi

if has train; then
    # Epochs: the recipe, or fitted to the time left (smoke's projection x 1.5 for Lightning's
    # per-step work, validation, test and start-up; keep 90 s for measure and bundle).
    read -r E_MAIN E_EXITS NOTE < <("$PY" - "$OUT/smoke_report.json" "$SECONDS" <<'EOF'
import json, math, os, sys
report, elapsed = sys.argv[1], float(sys.argv[2])
limit = float(os.environ.get("CALL_LIMIT_S", "600"))
if os.environ.get("EPOCHS_MAIN") or os.environ.get("EPOCHS_EXITS"):
    print(os.environ.get("EPOCHS_MAIN", "60"), os.environ.get("EPOCHS_EXITS", "25"), "set-by-env")
    raise SystemExit
try:
    steps = {s["step"]: s for s in json.load(open(report))["steps"]}
    projected = 1.5 * steps["throughput"]["details"]["projected_recipe_s"]
except (OSError, KeyError, ValueError):
    print(60, 25, "no-projection")
    raise SystemExit
budget = limit - elapsed - 90
if projected <= budget or os.environ.get("FULL_RECIPE") == "1":
    print(60, 25, f"recipe(projected-{projected:.0f}s,budget-{budget:.0f}s)")
else:
    scale = max(budget, 0) / projected
    print(max(1, math.floor(60 * scale)), max(1, math.floor(25 * scale)),
          f"REDUCED(projected-{projected:.0f}s-for-60+25,budget-{budget:.0f}s)")
EOF
)
    say "train: $E_MAIN + $E_EXITS epochs ($NOTE)"
    "$PY" -m multiexit.train --stage all --run "$RUN" --runs-dir "$WORK/runs" --width 1.0 \
        --head conv_pool --recipe "$RECIPE" --epochs-main "$E_MAIN" --epochs-exits "$E_EXITS" --seed 0 \
        --devices 1 --no-progress --export "$EXPORT" 2>&1 | tee -a "$LOG"
    {
        echo "# GPU reference run"
        echo
        echo "- command: \`scripts/gpu_reference_run.sh $OUT $STEPS\` ($(date -u +%FT%TZ))"
        echo "- training: $E_MAIN + $E_EXITS epochs, $NOTE (paper recipe: 60 + 25), --recipe $RECIPE"
        echo "- export: $EXPORT (bundled as reference_run.tgz.part-*)"
    } >"$REPORT"
fi

if has measure; then
    "$PY" -m multiexit.evaluate "$EXPORT" --out "$EXPORT/evaluate_test.csv" 2>&1 | tee -a "$LOG"
    "$PY" -m profiling.measure --gpu 0 --run "$EXPORT" --out "$EXPORT/latency_gpu0" --quiet \
        2>&1 | tee -a "$LOG"
    "$PY" -m profiling.measure --gpu 0 --run "$EXPORT" --cuda-graphs --quiet \
        --out "$EXPORT/latency_gpu0_graphs" 2>&1 | tee -a "$LOG"
    if [[ -f $REPORT ]]; then  # the two tables' medians per exit, as measure printed them
        { grep -h " ms$" "$LOG" || true; } | tail -2 |
            sed 's/^/- latency (eager, then graphs): /' >>"$REPORT"
    fi
fi

if has bundle; then
    rm -f "$OUT"/reference_run.tgz.part-*
    tar -C "$(dirname "$EXPORT")" -czf - "$RUN" | split -b 15m - "$OUT/reference_run.tgz.part-"
    say "bundle: $(ls "$OUT"/reference_run.tgz.part-* | wc -l) part(s) in $OUT"
fi
say "done in $SECONDS s"
