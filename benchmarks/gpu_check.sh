#!/usr/bin/env bash
# One prepared check of every CUDA path, in one short run on a GPU machine.
#
#   benchmarks/gpu_check.sh [OUTDIR]        # OUTDIR default: $OUT if set, else runs/gpu_check
#
# Steps (each under its own timeout, and all of them under one deadline of GPU_CHECK_BUDGET_S,
# default 450 s, so the whole check ends within 8 minutes; a step that no longer fits is skipped
# and says so):
#   1. pytest -m cuda                      the CUDA-marked tests (AMP extraction, faiss GPU k-means,
#                                          CUDA embedding)
#   2. NCCL, 2 processes (torchrun)        benchmarks/nccl_check.py: the Partial FC head split over 2
#                                          ranks against 1 process. With one GPU NCCL cannot put two
#                                          ranks on it: the NCCL attempt is recorded as such and the
#                                          same check runs with gloo on CUDA tensors instead.
#   3. Partial FC head, 1M classes         benchmarks/partial_fc.py --device cuda, r = 0.1 and 1.0
#   4. ViT-B/32 training                   benchmarks/train_throughput.py --rows b32-1m: images/s and
#                                          the head's share of the step
#   5. faiss GPU k-means                   clustering.kmeans.spherical_kmeans on GPU 0
#   6. GPU kNN                             benchmarks/knn_search.py (faiss GPU rows appear on a GPU)
#   7. extraction                          benchmarks/extraction.py --device cuda: end-to-end against
#                                          model-only throughput
# Writes OUTDIR/gpu_check.md (one Markdown table) and OUTDIR/gpu_check.json, plus every step's log
# and raw JSON under OUTDIR/raw/. Without a CUDA GPU it says so, writes the two files with that
# status, and exits 0. Exit status otherwise: 0 when every step that ran passed, 1 if any failed.
set -u
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-runs/gpu_check}}
PY=${PYTHON:-$(command -v python3 || command -v python)}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
TORCHRUN="$PY -m torch.distributed.run"
BUDGET=${GPU_CHECK_BUDGET_S:-450}
RAW="$OUTDIR/raw"
mkdir -p "$RAW"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
STATUS="$RAW/steps.tsv"
: > "$STATUS"
START=$(date +%s)

NGPU=$($PY -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)" 2>/dev/null || echo 0)
if [ "${NGPU:-0}" -lt 1 ]; then
  echo "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing to check."
  $PY benchmarks/gpu_check_report.py "$RAW" "$OUTDIR" --no-gpu
  exit 0
fi
echo "gpu_check: $NGPU CUDA GPU(s); writing to $OUTDIR (budget ${BUDGET}s)"

# step NAME TIMEOUT_S COMMAND...: run with min(TIMEOUT_S, what is left of the budget); log to raw/NAME.log
step() {
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - START) ))
  if [ "$left" -lt 15 ]; then
    printf '%s\tskipped\t0\tout of time (budget %ss)\n' "$name" "$BUDGET" >> "$STATUS"
    echo "== $name: skipped, out of time"; return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (timeout ${limit}s)"
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$RAW/$name.log" 2>&1
  local rc=$?
  local secs=$(( $(date +%s) - t0 ))
  local state=passed
  [ $rc -ne 0 ] && state=failed
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && state=timeout
  [ $rc -ne 0 ] && [ "${EXPECT_FAIL:-0}" = 1 ] && state=refused  # an expected refusal, not a failure
  printf '%s\t%s\t%s\t%s\n' "$name" "$state" "$secs" "$(tail -n 1 "$RAW/$name.log" | tr '\t' ' ' | cut -c1-200)" >> "$STATUS"
  echo "   $state in ${secs}s: $(tail -n 1 "$RAW/$name.log" | cut -c1-160)"
}

step cuda_tests 120 $PY -m pytest -m cuda -q -p no:cacheprovider tests
if [ "$NGPU" -ge 2 ]; then
  step nccl_2proc 90 $TORCHRUN --standalone --nproc_per_node 2 benchmarks/nccl_check.py --device cuda \
       --output "$RAW/nccl_2proc.json"
else
  # Two ranks on one GPU: recent NCCL refuses ("Duplicate GPU detected"); recorded, then gloo on CUDA.
  EXPECT_FAIL=1 step nccl_2proc_one_gpu 45 $TORCHRUN --standalone --nproc_per_node 2 benchmarks/nccl_check.py --device cuda \
       --output "$RAW/nccl_2proc_one_gpu.json"
  step gloo_cuda_2proc 60 $TORCHRUN --standalone --nproc_per_node 2 benchmarks/nccl_check.py --device cuda \
       --backend gloo --output "$RAW/gloo_cuda_2proc.json"
fi
step partial_fc_1m 100 $PY benchmarks/partial_fc.py --device cuda --classes 1000000 --rates 0.1 1.0 --out "$RAW/partial_fc"
step train_b32 90 $PY benchmarks/train_throughput.py --device cuda --rows b32-1m --out "$RAW/train"
step kmeans_gpu 60 $PY benchmarks/gpu_kmeans.py --output "$RAW/kmeans_gpu.json"
step knn_gpu 60 $PY benchmarks/knn_search.py --k 10 100 --output "$RAW/knn.json"
step extraction_cuda 90 $PY benchmarks/extraction.py --model ViT-B-32 --pretrained none --device cuda \
     --workers 8 --per-concept 120 --json "$RAW/extraction.json"

$PY benchmarks/gpu_check_report.py "$RAW" "$OUTDIR"
echo "gpu_check: done in $(( $(date +%s) - START ))s"
! grep -qP '\t(failed|timeout)\t' "$STATUS" || { grep -P '\t(failed|timeout)\t' "$STATUS" | cut -f1,2; exit 1; }
