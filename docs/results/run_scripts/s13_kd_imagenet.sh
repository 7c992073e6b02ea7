#!/bin/bash
# Session 13 (docs/results/chain_session13.md), issue 16 item 4 under the paper's protocol: the student trained from
# its ImageNet weights with the teacher from the first step, against the same training without the teacher. Every
# earlier arm started from the shipped, already trained student, where lambda_dp moved nothing (sessions 4-12).
# Each arm (ARMS: the lambda_dp values, default "0 1") is s6_student_kd.sh's two stages, all else equal (data
# order, augmentation, steps):
#   1. EPOCHS1 x 141 steps of 32, lr 1e-3, from no checkpoint (INIT="": the config's ImageNet weights): the human
#      AFW/HELEN train faces + the face5-ens5 pack, weight 1;
#   2. EPOCHS2 x 33 steps, lr 1e-4: the human faces alone.
# Both stages with a 0.98 weight average and val on the AFW+HELEN faces only; teacher T (s4_common.sh, 3.578).
# At lambda_dp 0 `training distill` skips the teacher's forward: that arm is plain training, at its speed.
# Run folders: $RUNS/k_in<lambda>_1 and _2 (TAG puts a suffix after <lambda>). SETS: more `--set key=value` words for
# both stages (a second seed: TAG=s1 SETS="--set train.seed=1"). LR1: stage 1's learning rate (default 1e-3; session 14: 5e-4).
source "$(dirname "$0")/s4_common.sh"
for dp in ${ARMS:-0 1}; do
  ARM=in$dp${TAG:-} INIT= LR1=${LR1:-0.001} EPOCHS1=${EPOCHS1:-24} EPOCHS2=${EPOCHS2:-8} LOUT=0 TEACHER=$T PACKS="$P" \
    SETS="$LO --set data.val_list=\"$LISTS/val_afw_helen.txt\" --set distill.lambda_dp=$dp --set train.ema_decay=0.98 \
${SETS:-}" bash docs/results/run_scripts/s6_student_kd.sh || exit 1
done
