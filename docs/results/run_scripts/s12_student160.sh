#!/bin/bash
# Session 12 (docs/results/chain_session12.md): what the student gets from input resolution. The shipped 3.89
# student (ONNX rebuild, 128 px) continued at 160 px (20 px heatmaps), one round of the recipe that session 11 gave
# the dense student at 128 px (s11_student_round.sh, which measured 3.891 there): 8 x 141 steps on the human
# AFW/HELEN faces + the face5-ens5 pack, then 8 x 33 on the human faces, lambda_dp 0.5 and a 0.98 weight average,
# from session 10's GPU teacher (3.578). ROUNDS names the rounds (default a), each from the one before (the first
# from PREV).
source "$(dirname "$0")/s4_common.sh"
S=docs/results/run_scripts
GEO="--set model.input_size=${SIZE:-160} --set model.heatmap_size=${HM:-20}"
PREV=${PREV:-$PWD/models/student.onnx}
# DP: lambda_dp (0: no teacher term; since session 13 the step then skips the teacher's forward); TAG: set into
# the run names
# (the no-distillation arm of round b: TAG=n DP=0 ROUNDS=b PREV=/work/runs/k_s160a_2/checkpoints/best.pt)
for r in ${ROUNDS:-a}; do
  ARM=s160${TAG:-}$r INIT=$PREV EPOCHS1=8 LOUT=0 TEACHER=$T PACKS="$P" \
    SETS="$LO --set distill.lambda_dp=${DP:-0.5} --set train.ema_decay=0.98 $GEO" bash $S/s6_student_kd.sh || exit 1
  PREV=$RUNS/k_s160${TAG:-}${r}_2/checkpoints/best.pt
done
