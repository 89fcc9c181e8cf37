#!/bin/bash
# The QAT ablation of issue #13: continue a quickstart run's distilled student from the same point twice,
# with the same data, top-k cache, settings and number of steps -- once plain, once with its linear weights
# fake-quantized to gguf:q4_k_m's grid for every step (--qat gguf:q4_k_m --qat-fraction 1.0) -- so that the
# only difference between the two continued students is quantization-aware training.
#
#   benchmarks/quant_quality_qat.sh RUN OUT VARIANT STEPS     (VARIANT: plain or qat)
#
# RUN: a quickstart run directory (read only: the student and the top-k cache are copied to OUT first).
# The distill settings are examples/quickstart.yaml's (forward KL from the top-k cache, alpha 0.8, batch 4,
# max length 160) except a lower, constant-start learning rate for a continuation (1e-4, no warm-up).
# Rerunning the same command resumes from the last checkpoint (every 10 steps), so a run may be split
# into several commands of a few minutes each, e.g. `flock LOCK timeout 540 benchmarks/quant_quality_qat.sh ...`
# repeated until OUT/cont-VARIANT exists (a killed run loses the steps since its last checkpoint).
set -euo pipefail
RUN=$1 OUT=$2 VARIANT=$3 STEPS=$4
PY=${PY:-python}
case $VARIANT in
  plain) extra=() ;;
  qat) extra=(--qat gguf:q4_k_m --qat-fraction 1.0) ;;
  *) echo "error: VARIANT must be plain or qat, got '$VARIANT'" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
if [ ! -d "$OUT/base" ]; then cp -r "$RUN/students/distilled" "$OUT/base.tmp" && mv "$OUT/base.tmp" "$OUT/base"; fi
W=$OUT/cont-$VARIANT.work
[ -d "$W/teacher-topk" ] || { mkdir -p "$W"; cp -r "$RUN/students/distilled.work/teacher-topk" "$W/teacher-topk"; }
TEACHER=$(PYTHONPATH=${PYTHONPATH:-.} $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['teacher'])" \
          "$RUN/students/distilled/distill_config.json")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MKL_NUM_THREADS=${MKL_NUM_THREADS:-2}
$PY -m edgedistill.cli distill --student "$OUT/base" --data "$RUN/generate/teacher.jsonl" --teacher "$TEACHER" \
  --loss forward_kl --teacher-topk 64 --alpha 0.8 --temperature 1.0 --lr 1e-4 --warmup-ratio 0 \
  --batch-size 4 --max-steps "$STEPS" --max-length 160 --seed 0 --cpu --save-every 10 --resume \
  "${extra[@]}" --out "$OUT/cont-$VARIANT" --work-dir "$W"
