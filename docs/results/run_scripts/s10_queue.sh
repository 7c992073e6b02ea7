#!/bin/bash
# Session 10 (docs/results/chain_session10.md section 3): student-0.5x at 96 px / 12 px heatmaps, rounds of s6_student_kd.sh (8 x 141 + the human stage), from the
# shipped 128 px model (ONNX rebuild), teacher = the GPU-continued teacher (3.578, = shipped), pack face5-ens5.
# Session 11's seventh round: ROUNDS=g PREV=/work/runs/k_s96f_2/checkpoints/best.pt (ROUNDS names the rounds, PREV the start).
source "$(dirname "$0")/s4_common.sh"
S=docs/results/run_scripts
CONT="$LO --set distill.lambda_dp=0.5 --set train.ema_decay=0.98 --set model.input_size=96 --set model.heatmap_size=12"
PREV=${PREV:-$PWD/models/student-0.5x.onnx}
for r in ${ROUNDS:-a b c d e f}; do
  ARM=s96$r INIT=$PREV EPOCHS1=8 LOUT=0 TEACHER=$T PACKS="$P" SETS="$CONT" bash $S/s6_student_kd.sh || exit 1
  PREV=/work/runs/k_s96${r}_2/checkpoints/best.pt
done
