#!/usr/bin/env bash
# The published CPU reference run, end to end (docs/artifacts.md):
#   1. train the VGG-16 main branch (stage main), then its 16 exit heads on the frozen backbone
#      (stage exits, head design $HEAD), on the CIFAR-10 JPEG pack, and export the weights +
#      manifest + per-exit accuracy table to checkpoints/$RUN;
#   2. time every exit (CPU, one thread, process CPU time) -> exit table, 5 candidates, figure;
#   3. run the Figs. 5-8 cells on the measured candidate table beside the paper's Table I.
#
# Usage: scripts/cpu_reference_run.sh [train|measure|offload|all]   (default: all)
# The settings below are what produced checkpoints/vgg16_cpu_ref: width 0.5, the fast recipe
# with 4-pixel crops (long enough schedules for the standard augmentation), 32 + 5 epochs,
# conv_pool_wide heads, about 3.5 hours on one CPU thread beside other work (docs/artifacts.md). The two stages are two
# commands because stage main is built with the default head (which fixes the backbone's random
# initialisation) and stage exits trains the chosen $HEAD on its best checkpoint. For the full
# recipe on a GPU: RUN=vgg16 TRAIN_FLAGS="" HEAD=conv_pool MEASURE_FLAGS="--gpu 0"
# LATENCY_NAME=latency_gpu0 (the multiexit defaults: width 1, 60 + 25 epochs; docs/artifacts.md,
# "Replacing the CPU reference run"). An empty TRAIN_FLAGS or MEASURE_FLAGS is honoured as empty
# (${VAR-default}); only an unset one takes the CPU reference default.
# Interpreter: $PYTHON (or $PY) if set, else .venv/bin/python if present, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-${PY:-}}
if [[ -z $PY ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
RUN=${RUN:-vgg16_cpu_ref}
RUNS_DIR=${RUNS_DIR:-runs}  # Lightning checkpoints and logs (git-ignored; never committed)
TRAIN_FLAGS=${TRAIN_FLAGS---width 0.5 --recipe fast --crop-pad 4 --epochs-main 32 --epochs-exits 5 --tta}
HEAD=${HEAD:-conv_pool_wide}
OUT=checkpoints/$RUN
LATENCY=$OUT/${LATENCY_NAME:-latency_cpu_1t}
MEASURE_FLAGS=${MEASURE_FLAGS---device cpu --threads 1 --repeats 200 --warmup 20 --interleave --cpu-clock process}
OFFLOAD_OUT=${OFFLOAD_OUT:-results/measured_cpu_ref}
STEP=${1:-all}

if [[ $STEP == train || $STEP == all ]]; then
    # shellcheck disable=SC2086  # TRAIN_FLAGS is a list of flags
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m multiexit.train --stage main --run "$RUN" \
        --runs-dir "$RUNS_DIR" $TRAIN_FLAGS --seed 0 --no-progress
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PY" -m multiexit.train --stage exits --run "$RUN" \
        --runs-dir "$RUNS_DIR" $TRAIN_FLAGS --head "$HEAD" --seed 0 --no-progress --export "$OUT"
fi

if [[ $STEP == measure || $STEP == all ]]; then
    # shellcheck disable=SC2086  # MEASURE_FLAGS is a list of flags
    OMP_NUM_THREADS=1 "$PY" -m profiling.measure $MEASURE_FLAGS --run "$OUT" --k 5 --out "$LATENCY"
fi

if [[ $STEP == offload || $STEP == all ]]; then
    OMP_NUM_THREADS=1 "$PY" scripts/offload_measured.py --exits "$LATENCY/candidates.csv" \
        --compare checkpoints/paper_table1.csv --out "$OFFLOAD_OUT" \
        --devices 4 10 --taus 10 30 --seeds 0 --train-slots 500 --eval-slots 500 --workers 2
fi
