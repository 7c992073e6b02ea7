#!/bin/bash
# Session 12 (docs/results/chain_session12.md): what the student gets from input resolution. The shipped 3.89
# student (ONNX rebuild, 128 px) continued at 160 px (20 px heatmaps), one round of the recipe that session 11 gave
# the dense student at 128 px (s11_student_round.sh, which measured 3.891 there): 8 x 141 steps on the human
# AFW/HELEN faces + the face5-ens5 pack, then 8 x 33 on the human faces, lambda_dp 0.5 and a 0.98 weight average,
# from session 10's GPU teacher (3.578). ROUNDS more rounds follow, each from the last one's best.
source "$(dirname "$0")/s4_common.sh"
S=docs/results/run_scripts
T=${T:-$RUNS/gpu1/teacher.pt}
P='["/work/pseudo/face5-ens5a","/work/pseudo/face5-ens5b"]'
LO='--set data.label_offsets={"afw":[0.744,0.187],"helen":[0.466,-0.004]}'
GEO="--set model.input_size=${SIZE:-160} --set model.heatmap_size=${HM:-20}"
PREV=${PREV:-$PWD/models/student.onnx}
for r in ${ROUNDS:-a}; do
  ARM=s160$r INIT=$PREV EPOCHS1=8 LOUT=0 TEACHER=$T PACKS="$P" \
    SETS="$LO --set distill.lambda_dp=0.5 --set train.ema_decay=0.98 $GEO" bash $S/s6_student_kd.sh || exit 1
  PREV=$RUNS/k_s160${r}_2/checkpoints/best.pt
done
