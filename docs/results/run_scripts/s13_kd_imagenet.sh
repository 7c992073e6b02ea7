#!/bin/bash
# Session 13 (docs/results/chain_session13.md), issue 16 item 4 under the paper's protocol: the student trained from
# its ImageNet weights with the teacher from the first step, against the same training without the teacher. Every
# earlier arm started from the shipped, already trained student, where lambda_dp moved nothing (sessions 4-12).
# Each arm (ARMS: the lambda_dp values, default "0 1"), all else equal (data order, augmentation, steps):
#   1. EPOCHS1 x 141 steps of 32, lr 1e-3: the human AFW/HELEN train faces + the face5-ens5 pack, weight 1;
#   2. EPOCHS2 x 33 steps, lr 1e-4: the human faces alone.
# Both stages with a 0.98 weight average and val on the AFW+HELEN faces only; teacher T (s4_common.sh, 3.578).
# At lambda_dp 0 `training distill` skips the teacher's forward: that arm is plain training, at its speed.
# Run folders: $RUNS/k_in<lambda>_1 and _2 (TAG puts a suffix after <lambda>). SETS: more `--set key=value` words for
# both stages (a second seed: TAG=s1 SETS="--set train.seed=1").
source "$(dirname "$0")/s4_common.sh"
stage() {  # run-dir lambda_dp epochs steps lr extra-train init...
  local run=$1 dp=$2 epochs=$3 steps=$4 lr=$5 extra=$6
  shift 6
  $PY -m training distill --config training/configs/face68_distill.json --run-dir $RUNS/$run --no-export \
    --set "data.extra_train=$extra" --set data.extra_weight=1 --set "data.train_list=\"$LISTS/train_afw_helen.txt\"" \
    --set "data.val_list=\"$LISTS/val_afw_helen.txt\"" --set 'train.select_sources=["afw","helen"]' $LO \
    --set train.epochs=$epochs --set train.max_steps_per_epoch=$steps --set train.lr=$lr \
    --set train.ema_decay=0.98 --set train.threads=${THREADS:-2} --set train.cpu_bf16=auto \
    --set "distill.teacher=\"$T\"" --set distill.lambda_dp=$dp --set distill.lambda_out=0 ${SETS:-} "$@" \
    > $RUNS/$run.log 2> $RUNS/$run.err
}
for dp in ${ARMS:-0 1}; do
  a=k_in$dp${TAG:-}
  stage ${a}_1 $dp ${EPOCHS1:-24} 141 0.001 "$P" --set 'train.init_checkpoint=""' \
    --set 'train.pretrained="imagenet"' || exit 1
  stage ${a}_2 $dp ${EPOCHS2:-8} 33 0.0001 '[]' --set "train.init_checkpoint=\"$RUNS/${a}_1/checkpoints/last.pt\"" \
    || exit 1
done
