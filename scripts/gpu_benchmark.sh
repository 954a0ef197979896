#!/usr/bin/env bash
# One command for a GPU machine: how fast autoseg's 3d_hybrid trains and predicts there,
# lever by lever, beside nnU-Net's own 5-epoch benchmark trainer on the same data.
#
#   bash scripts/gpu_benchmark.sh [OUT_DIR]          # default OUT_DIR: gpu_benchmark_out
#
# Steps, each time-boxed with `timeout` (the most minutes in brackets; about 10 in all is
# expected on an H200 with the defaults):
#   1. synthetic ATLAS-like T1w cases at 1 mm (autoseg_synth --size full)     [SYNTH_MIN=2]
#   2. convert to the raw layout and plan + preprocess 3d_hybrid              [PLAN_MIN=2]
#   3. autoseg_benchmark --sweep: baseline, then each speed lever toggled     [BENCH_MIN=4]
#      -> OUT_DIR/autoseg_benchmark.json and .txt (the table)
#   4. if nnunetv2 imports in $NNUNET_PYTHON (default: $PYTHON) and CUDA is there:
#      the same raw cases as an nnU-Net raw dataset (benchmarks/nnunet_peer.py), its
#      planning and preprocessing                                         [NNUNET_PLAN_MIN=2]
#      and nnUNetTrainerBenchmark_5epochs (fold 0)                          [NNUNET_MIN=4]
#      -> OUT_DIR/nnunet_benchmark_result.json
# Logs of every step: OUT_DIR/logs/. A failed or timed-out step is reported and the steps
# that do not depend on it still run; the exit status is 1 if any step failed.
#
# Settings (environment): PYTHON (python3), DEVICE (auto), SIZE (full; `tiny` or `small`
# for a dry run on a CPU), CASES (4), ITERATIONS (10), WARMUP (3), WORKERS (loader
# processes; default: autoseg's RAM-aware choice), WORK (OUT_DIR/work), NNUNET_PYTHON,
# SYNTH_FLAGS (more autoseg_synth flags, e.g. "--spacing 8 8 8" for a quick dry run),
# SWEEP (levers to sweep; default all; without "compile" a CPU dry run takes minutes less),
# NNUNET_PROCESSES (8: nnU-Net preprocessing workers).
set -uo pipefail

OUT=${1:-gpu_benchmark_out}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-auto}
SIZE=${SIZE:-full}
CASES=${CASES:-4}
ITERATIONS=${ITERATIONS:-10}
WARMUP=${WARMUP:-3}
WORK=${WORK:-$OUT/work}
NNUNET_PYTHON=${NNUNET_PYTHON:-$PYTHON}
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATASET=Synth${SIZE}
NNUNET_DATASET=Dataset950_Synth${SIZE}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT/logs" "$WORK"
failed=0

# autoseg's commands through its CLI module (works installed or not): "${AUTOSEG[@]}" plan ...
AUTOSEG=("$PYTHON" -c 'import sys; from autoseg import cli
sys.exit(getattr(cli, sys.argv[1] + "_main")(sys.argv[2:]))')

# step NAME MINUTES COMMAND...: run time-boxed, output to logs/NAME.log; returns its status.
step() {
  local name=$1 minutes=$2 started status
  shift 2
  started=$(date +%s)
  echo "== $name (at most $minutes min)"
  timeout --kill-after=30 "${minutes}m" "$@" >"$OUT/logs/$name.log" 2>&1
  status=$?
  if [ "$status" -eq 0 ]; then
    echo "   ok in $(($(date +%s) - started)) s"
  else
    [ "$status" -eq 124 ] && echo "   TIMED OUT after $minutes min" || echo "   FAILED (exit $status)"
    tail -n 15 "$OUT/logs/$name.log" | sed 's/^/   | /'
    failed=1
  fi
  return "$status"
}

"$PYTHON" -c 'import autoseg.pipeline.benchmark, autoseg.data.convert' ||
  { echo "autoseg cannot be imported with $PYTHON (missing packages above)"; exit 1; }
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda:", torch.cuda.is_available())'
WS=(--home "$WORK/autoseg")
workers=()
[ -n "${WORKERS:-}" ] && workers=(-nw "$WORKERS")

if step synth "${SYNTH_MIN:-2}" "${AUTOSEG[@]}" synth atlas "$WORK/source" --cases "$CASES" --size "$SIZE" \
  ${SYNTH_FLAGS:-} &&
  step convert "${PLAN_MIN:-2}" "${AUTOSEG[@]}" convert atlas "$WORK/source" -d "$DATASET" "${WS[@]}" &&
  step plan "${PLAN_MIN:-2}" "${AUTOSEG[@]}" plan -d "$DATASET" -c 3d_hybrid --no-progress "${WS[@]}"; then
  step autoseg_benchmark "${BENCH_MIN:-4}" "${AUTOSEG[@]}" benchmark -d "$DATASET" -c 3d_hybrid \
    --device "$DEVICE" --sweep ${SWEEP:-} --iterations "$ITERATIONS" --warmup "$WARMUP" "${workers[@]}" \
    --no-progress --out "$OUT/autoseg_benchmark.json" "${WS[@]}"
  sed -n "/^$DATASET 3d_hybrid on /,\$p" "$OUT/logs/autoseg_benchmark.log" | tee "$OUT/autoseg_benchmark.txt"
fi

if ! "$NNUNET_PYTHON" -c 'import nnunetv2' 2>/dev/null; then
  echo "== nnU-Net: nnunetv2 does not import in $NNUNET_PYTHON; skipped"
elif [ ! -f "$WORK/autoseg/raw/$DATASET/dataset.json" ]; then
  echo "== nnU-Net: no converted raw dataset (see the steps above); skipped"
else
  export nnUNet_raw="$WORK/nnunet/nnUNet_raw" nnUNet_preprocessed="$WORK/nnunet/nnUNet_preprocessed"
  export nnUNet_results="$WORK/nnunet/nnUNet_results"
  BIN=$(dirname "$NNUNET_PYTHON")
  step nnunet_raw 1 "$PYTHON" -c 'import sys; from pathlib import Path
from benchmarks.nnunet_peer import Layout, write_raw_tree
write_raw_tree(Path(sys.argv[1]), Layout(Path(sys.argv[2]), sys.argv[3], "nnUNetPlans", 0))' \
    "$WORK/autoseg/raw/$DATASET" "$WORK/nnunet" "$NNUNET_DATASET" &&
    step nnunet_plan "${NNUNET_PLAN_MIN:-2}" "$BIN/nnUNetv2_plan_and_preprocess" -d 950 -c 3d_fullres \
      -np "${NNUNET_PROCESSES:-8}" --verify_dataset_integrity --no_pbar
  if ! "$NNUNET_PYTHON" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
    echo "== nnU-Net training: nnUNetTrainerBenchmark_5epochs needs CUDA; skipped"
  elif [ -d "$nnUNet_preprocessed/$NNUNET_DATASET" ]; then
    step nnunet_benchmark "${NNUNET_MIN:-4}" "$BIN/nnUNetv2_train" 950 3d_fullres 0 \
      -tr nnUNetTrainerBenchmark_5epochs
    result=$(find "$nnUNet_results" -name benchmark_result.json | head -n 1)
    [ -n "$result" ] && cp "$result" "$OUT/nnunet_benchmark_result.json" && cat "$result"
  fi
fi

echo "results in $OUT (logs in $OUT/logs)"
exit "$failed"
