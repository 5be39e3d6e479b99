#!/usr/bin/env bash
# The GPU reference run, in one command that fits a 10-minute device call (docs/artifacts.md,
# "GPU smoke and reference run"):
#   smoke    scripts/gpu_smoke.py OUT: every GPU path once, and the measured training speed
#            (each step has its own time limit; the whole smoke is stopped after SMOKE_LIMIT_S)
#   train    the paper recipe, 60 + 25 epochs on all 45,000 training images, one GPU, bf16,
#            test accuracy of every exit, export (safetensors + manifest) to WORK/checkpoints/RUN;
#            if the time left does not hold it, fewer epochs (same 60:25 ratio), said as REDUCED
#            in OUT/reference_report.md (scripts/gpu_schedule.py; FULL_RECIPE=1 forbids that).
#            The epochs chosen are saved in WORK/schedule.txt: a retry continues that run.
#   measure  multiexit.evaluate on the export (a second, plain test-set evaluation), then
#            profiling.measure --gpu 0 (eager, the table the offloading uses) and --cuda-graphs
#   bundle   the run folder as OUT/reference_run.tgz.part-* (< 16 MiB each: a device machine
#            returns at most 8 files of 16 MiB), made as soon as the export exists (right after
#            train, before measure), and what measure adds as OUT/reference_measure.tgz,
#            refreshed after each measurement; unpack both with
#            cat OUT/reference_run.tgz.part-* | tar -xz -C checkpoints
#            tar -xzf OUT/reference_measure.tgz -C checkpoints
#
# Usage: scripts/gpu_reference_run.sh OUT [STEP ...]     (default: smoke train measure bundle)
# Environment: PYTHON (default .venv/bin/python if present, else python3); WORK (default
# runs/gpu_reference, git-ignored: a rerun on the same machine resumes training from its
# last.ckpt with the saved epochs); RUN (vgg16); EPOCHS_MAIN / EPOCHS_EXITS (default 60 / 25,
# and no fitting when set); RECIPE (standard: multiexit's --recipe; fast is measured only at 10
# epochs on the CPU, docs/multiexit.md "Training recipes"); CALL_LIMIT_S (600: the device
# call's limit the run must end within), MEASURE_RESERVE_S (90), MARGIN_S (30), EPOCH_FIXED_S
# (1), FALLBACK_RECIPE_S (600): the time guard, see scripts/gpu_schedule.py; SMOKE_LIMIT_S
# (300); FULL_RECIPE=1; GRLE_CIFAR_PACK (default data/cifar10_jpeg.npz when that file exists).
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
SMOKE_LIMIT_S=${SMOKE_LIMIT_S:-300}
mkdir -p "$OUT" "$WORK"
LOG=$OUT/reference.log
REPORT=$OUT/reference_report.md
has() { [[ " $STEPS " == *" $1 "* ]]; }
say() { echo "$*" | tee -a "$LOG"; }
report() { echo "$*" >>"$REPORT"; }

# -- bundles: OUT is all that comes back from a device call, so whatever is done goes there at
# once; a later failure, or the call's time limit, cannot take it back
WEIGHTS_BUNDLED=""
bundle_weights() {  # the run folder as it is now; once per call, as soon as the export exists
    has bundle && [[ -z $WEIGHTS_BUNDLED && -f $EXPORT/manifest.json ]] || return 0
    rm -f "$OUT"/reference_run.tgz.part-*
    tar -C "$(dirname "$EXPORT")" -czf - "$RUN" | split -b 15m - "$OUT/reference_run.tgz.part-"
    WEIGHTS_BUNDLED=1
    say "bundle: $(ls "$OUT"/reference_run.tgz.part-* | wc -l) part(s) in $OUT"
}
bundle_measure() {  # the run folder less its weights (small), once measure has written to it
    has bundle && [[ -f $EXPORT/evaluate_test.csv || -d $EXPORT/latency_gpu0 ]] || return 0
    # made in WORK and moved: OUT never holds a half-written archive or a stray temporary file
    # (a device call returns at most 8 files: 2 smoke, log, report, 3 weight parts, this one)
    tar -C "$(dirname "$EXPORT")" --exclude "$RUN/model.safetensors" -czf \
        "$WORK/reference_measure.tgz" "$RUN"
    mv -f "$WORK/reference_measure.tgz" "$OUT/reference_measure.tgz"
}

say "# GPU reference run $(date -u +%FT%TZ): steps '$STEPS', python $PY, work $WORK"

if has smoke; then
    # a failed or stopped smoke step is in its report (rewritten after every step); the run
    # goes on so that a partial result comes back
    set +e
    timeout -k 10 "$SMOKE_LIMIT_S" "$PY" scripts/gpu_smoke.py "$OUT" --work "$WORK/smoke" 2>&1 |
        tee -a "$LOG"
    status=${PIPESTATUS[0]}
    set -e
    if [[ $status == 124 || $status == 137 ]]; then
        say "smoke: stopped after SMOKE_LIMIT_S=$SMOKE_LIMIT_S s; its report holds the steps it finished"
        rm -f "$OUT"/.smoke_report.*  # a report write the stop interrupted
    fi
fi

if has train; then
    plan=$("$PY" scripts/gpu_schedule.py "$OUT/smoke_report.json" "$SECONDS" "$WORK/schedule.txt")
    read -r E_MAIN E_EXITS NOTE <<<"$plan"
    say "train: $E_MAIN + $E_EXITS epochs ($NOTE)"
    {
        echo "# GPU reference run"
        echo
        echo "- command: \`scripts/gpu_reference_run.sh $OUT $STEPS\` ($(date -u +%FT%TZ))"
        echo "- training: $E_MAIN + $E_EXITS epochs, $NOTE (paper recipe: 60 + 25), --recipe $RECIPE"
    } >"$REPORT"
    "$PY" -m multiexit.train --stage all --run "$RUN" --runs-dir "$WORK/runs" --width 1.0 \
        --head conv_pool --recipe "$RECIPE" --epochs-main "$E_MAIN" --epochs-exits "$E_EXITS" --seed 0 \
        --devices 1 --no-progress --export "$EXPORT" 2>&1 | tee -a "$LOG"
    report "- trained and exported by $SECONDS s: $EXPORT (bundled as reference_run.tgz.part-*)"
fi
bundle_weights

if has measure; then
    "$PY" -m multiexit.evaluate "$EXPORT" --out "$EXPORT/evaluate_test.csv" 2>&1 | tee -a "$LOG"
    bundle_measure
    "$PY" -m profiling.measure --gpu 0 --run "$EXPORT" --out "$EXPORT/latency_gpu0" --quiet \
        2>&1 | tee -a "$LOG"
    bundle_measure
    "$PY" -m profiling.measure --gpu 0 --run "$EXPORT" --cuda-graphs --quiet \
        --out "$EXPORT/latency_gpu0_graphs" 2>&1 | tee -a "$LOG"
    bundle_measure
    if [[ -f $REPORT ]]; then  # the two tables' medians per exit, as measure printed them
        { grep -h " ms$" "$LOG" || true; } | tail -2 |
            sed 's/^/- latency (eager, then graphs): /' >>"$REPORT"
    fi
fi
has measure || bundle_measure  # "bundle" alone: what an earlier call measured
say "done in $SECONDS s"
