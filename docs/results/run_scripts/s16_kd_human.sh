#!/bin/bash
# Session 16 (docs/results/chain_session16.md), issue 16 item 4 in the paper's own setting: the student trained from
# its ImageNet weights on the human-labelled faces alone (AFW/HELEN train, 1,064 faces; no pseudo-label pack), with
# the teacher's features from the first step against the same training without them. Sessions 13-15 trained on
# the human faces + the face5-ens5 pack, whose labels already carry the teacher (it is one of the ensemble's
# members): there the no-distillation arm learns from the teacher too.
# Each arm (ARMS: the lambda_dp values, default "0 1") is one s6_student_kd.sh stage, all else equal (data order,
# augmentation, steps, heads' start): EPOCHS x 33 steps of 32 (one pass over the faces an epoch), lr LR with the
# config's drops at 67% and 89% of the epochs, a 0.98 weight average, val on the AFW+HELEN faces only.
# Teacher T (s4_common.sh; a new machine: T=$PWD/models/teacher.onnx, the 3.578 teacher rebuilt from its ONNX).
# At lambda_dp 0 `training distill` does not load the teacher: that arm is plain training, at its speed.
# Run folders: $RUNS/k_h<lambda><TAG>_1. SETS: more `--set key=value` words (a second seed: TAG=s1
# SETS="--set train.seed=1").
# PREFIX (default h), PACKS (default [], no pack), W (their weight, default 1), LOUT (lambda_out, default 0): for
# s17_kd_unlabelled.sh, which runs this protocol with an unlabelled pack. INIT (default none: the ImageNet start): a
# model to start from instead (session 18: the shipped 0.25x, INIT=models/student-0.25x.onnx LR=0.0001).
source "$(dirname "$0")/s4_common.sh"
for dp in ${ARMS:-0 1}; do
  ARM=${PREFIX:-h}$dp${TAG:-} INIT=${INIT:-} LR1=${LR:-0.0005} EPOCHS1=${EPOCHS:-60} EPOCHS2=0 LOUT=${LOUT:-0} TEACHER=$T \
    PACKS="${PACKS:-[]}" W=${W:-1} \
    SETS="$LO --set data.val_list=\"$LISTS/val_afw_helen.txt\" --set distill.lambda_dp=$dp --set train.ema_decay=0.98 \
${SETS:-}" bash docs/results/run_scripts/s6_student_kd.sh || exit 1
done
