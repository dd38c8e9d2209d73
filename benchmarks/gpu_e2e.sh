#!/usr/bin/env bash
# The real-size end-to-end comparison (issue 14) on one GPU: LLaVA-Video-7B-Qwen2 + Qwen2-VL-2B (+ SigLIP-base
# for `fast`) built from benchmarks/configs with random weights in bfloat16 on the GPU, baseline / paper-noopt /
# paper-noprefix / paper / paper-overlap / paper-half-noprefix / paper-half / fast-qwen / fast (issues 14 and 21)
# on a 640x360 and a 1280x720 ten-minute video, three questions each; the tables end with the ratio to what the
# paper reports (×1.42 paper, ×0.92 paper-half) and the with/without ratios of prefix reuse and overlap.
# No network is used. Writes the tables to the file given as first argument (default gpu_e2e.md).
#
#   benchmarks/gpu_e2e.sh results.md                 # on a GPU (about 5 minutes on one H100/H200-class GPU before
#                                                    # issue 21 added three runs, not re-measured; LIMIT_S bounds it)
#   DEVICE=cpu benchmarks/gpu_e2e.sh t.md --scale --minutes 1 --questions 1    # smoke test without a GPU
#
# Extra arguments go to both runs of benchmarks/bench_e2e.py. LIMIT_S (default 480) bounds the whole script.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUT="${1:-gpu_e2e.md}"
shift || true
DEVICE="${DEVICE:-cuda}"
LIMIT_S="${LIMIT_S:-480}"
start=$(date +%s)
: > "$OUT"
for size in 640x360 1280x720; do
  left=$(( LIMIT_S - ($(date +%s) - start) ))
  if (( left < 30 )); then echo "time limit reached before the $size run" | tee -a "$OUT"; break; fi
  echo "## $size" >> "$OUT"
  timeout "$left" python benchmarks/bench_e2e.py --device "$DEVICE" --size "$size" --out "$OUT.part" "$@"
  cat "$OUT.part" >> "$OUT"
  echo >> "$OUT"
  rm -f "$OUT.part"
done
if [[ "$DEVICE" == cuda* ]]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> "$OUT" 2>/dev/null || true
fi
echo "wrote $OUT ($(( $(date +%s) - start )) s)"
