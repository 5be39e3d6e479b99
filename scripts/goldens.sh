#!/usr/bin/env bash
# Reduced-size runs of every committed offload report's command, to compare two trees number by
# number: run it on the tree before a change and on the tree after it, and compare the two
# outputs with scripts/compare_runs.py.
#
# Usage: scripts/goldens.sh TREE OUT [ids...]     (default ids: G1 ... G8)
#   TREE  a checkout of this repository (e.g. a `git worktree add /tmp/before <rev>`)
#   OUT   output folder; OUT/<id>/ per golden, OUT/<id>.log, OUT/times.txt
# Then: python scripts/compare_runs.py BEFORE_OUT AFTER_OUT
#
#   G1 paper --quick at compute scale 4 (Figs. 5-8 groups, convergence, topology)
#   G2 the same at the stated numbers, two seeds, M = 4
#   G3 ablation --quick       G4 regime --quick
#   G5 scripts/offload_measured.py on the CPU reference table and Table I
#   G6 devices --quick with the former one-run engine (only trees before the one-code-path
#      refactor have --engine)
#   G7 the baseline and calibration CLIs (their wall-time column dropped)
#   G8 simulator traces of the paths no committed file uses (scripts/golden_traces.py)
# About 3 minutes of one CPU core in all. The interpreter is $PYTHON, else this checkout's
# .venv/bin/python; TREE's own code is what runs (PYTHONPATH=TREE, working directory TREE).
set -uo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
TREE=$(cd "$1" && pwd); OUT=$2; shift 2
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
IDS=${*:-G1 G2 G3 G4 G5 G6 G7 G8}
PY=${PYTHON:-$HERE/.venv/bin/python}
export OMP_NUM_THREADS=1 PYTHONPATH=$TREE
rm -f "$OUT/times.txt"; cd "$TREE"
E="$PY -m offload.experiments"
CAND=checkpoints/vgg16_cpu_ref/latency_cpu_1t/candidates.csv
DROP_WALL='s/ +[0-9.]+$//'
for id in $IDS; do
  rm -rf "${OUT:?}/$id"; t0=$(date +%s)
  case $id in
    G1) $E paper --quick --compute-scale 4 --train-slots 200 --eval-slots 100 --convergence-slots 150 --workers 1 --out "$OUT/G1";;
    G2) $E paper --quick --compute-scale 1 --seeds 0 1 --devices 4 --train-slots 200 --eval-slots 100 --convergence-slots 150 --workers 1 --out "$OUT/G2";;
    G3) $E ablation --quick --compute-scale 4 --train-slots 200 --eval-slots 60 --workers 1 --out "$OUT/G3";;
    G4) $E regime --quick --train-slots 200 --eval-slots 60 --workers 1 --out "$OUT/G4";;
    G5) $PY scripts/offload_measured.py --exits $CAND --compare checkpoints/paper_table1.csv --out "$OUT/G5" --devices 4 --taus 10 --seeds 0 --train-slots 200 --eval-slots 100 --workers 1;;
    G6) $E devices --quick --engine loop --train-slots 200 --eval-slots 60 --workers 1 --out "$OUT/G6";;
    G7) mkdir -p "$OUT/G7"
        $PY -m offload.sim.run_baselines --slots 60 --num-devices 5 --compute-scale 4 --optimum-every 10 | sed -E "$DROP_WALL" > "$OUT/G7/baselines.txt"
        $PY -m offload.sim.run_baselines --slots 60 --num-devices 5 --cross-slot-queue fcfs --dynamic-topology --max-devices 7 --optimum-every 10 | sed -E "$DROP_WALL" > "$OUT/G7/baselines_fcfs_dyn.txt"
        $PY -m offload.sim.calibration --slots 40 --num-devices 4 > "$OUT/G7/calibration.txt";;
    G8) mkdir -p "$OUT/G8"; $PY "$HERE/scripts/golden_traces.py" "$OUT/G8/traces.npz";;
    *) echo "unknown golden $id (G1 ... G8)" >&2; exit 2;;
  esac > "$OUT/$id.log" 2>&1
  echo "$id rc=$? $(( $(date +%s) - t0 )) s" | tee -a "$OUT/times.txt"
done
