#!/bin/bash
# Session 11 (docs/results/chain_session11.md): a student-0.5x made for the int8 fast path. The 3.89 student (ONNX
# rebuild) pruned by half with every kept channel count rounded to a multiple of 16 (prune.channel_multiple=16:
# onnxruntime's int8 convolutions run counts such as 12 or 13 about 1.6x slower), its regression hidden layer pruned
# too, the heatmap head left whole; feature distillation from session 10's GPU-continued teacher (3.578, = shipped
# teacher.onnx) on the human AFW/HELEN train faces + the face5-ens5 pack; then the human-label stage; then ROUNDS
# rounds of s6_student_kd.sh (8 x 141 with lambda_dp 0.5 and a 0.98 weight average, then 8 x 33 human). One run
# at a time, both cores. RUNS: run folders (default /work/runs).
source "$(dirname "$0")/s4_common.sh"
S=docs/results/run_scripts
CONT="$LO --set distill.lambda_dp=0.5 --set train.ema_decay=0.98"
if [ -z "${SKIP_PRUNE:-}" ]; then
  STUDENT=$PWD/models/student.onnx TEACHER=$T NAME=p11_a16 ALPHA=0.5 IGNORE='["hm_head"]' EXPORT=student-0.5x \
    EPOCHS=10 PACKS="$P" SETS="--set prune.channel_multiple=16" bash $S/s7_prune.sh || exit 1
  ln -sfn $RUNS/p11_a16 $RUNS/k_p11_a16_1
  ARM=p11_a16 STAGE1_FROM=p11_a16 LOUT=0 TEACHER=$T SETS="$LO" bash $S/s6_student_kd.sh || exit 1
fi
PREV=${PREV:-$RUNS/k_p11_a16_2/checkpoints/best.pt}  # SKIP_PRUNE=1 ROUNDS=e PREV=<k_a16d_2 best>: the fifth round
for r in ${ROUNDS:-b c d}; do
  ARM=a16$r INIT=$PREV EPOCHS1=8 LOUT=0 TEACHER=$T PACKS="$P" SETS="$CONT" bash $S/s6_student_kd.sh || exit 1
  PREV=$RUNS/k_a16${r}_2/checkpoints/best.pt
done
