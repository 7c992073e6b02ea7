#!/bin/bash
# Session 5, issue 16 item 2 (per-source weights): the 3.93 teacher (s4_teacher_long.sh's best) fine-tuned with the
# pseudo-labelled pack weighted down (W=0: human AFW+HELEN train faces only); HM = heatmap side. One arm per call,
# alone on both cores. SETS: more `--set key=value` words (no spaces inside a value; session 7: data.label_offsets).
source "$(dirname "$0")/s4_common.sh"
W=${W:-0}; NAME=${NAME:-tclean_w$W}
INIT=${INIT:-$RUNS/teacher192/checkpoints/best.pt}
if [ "$W" = "0" ]; then EXTRA="[]"; STEPS=${STEPS:-33}; else EXTRA="[\"$PSEUDO\"]"; STEPS=${STEPS:-141}; fi
$PY -m training train --config training/configs/face68_student.json --run-dir $RUNS/$NAME --no-export \
  --set model.input_size=192 --set model.heatmap_size=${HM:-24} \
  --set "data.extra_train=$EXTRA" --set data.extra_weight=$W --set "data.train_list=\"$LISTS/train_afw_helen.txt\"" \
  --set 'train.select_sources=["afw","helen"]' --set train.epochs=${EPOCHS:-8} --set train.max_steps_per_epoch=$STEPS \
  --set train.lr=${LR:-0.0001} --set train.threads=2 --set train.cpu_bf16=auto \
  --set "train.init_checkpoint=\"$INIT\"" --set train.export_name=teacher ${SETS:-} > $RUNS/$NAME.log 2> $RUNS/$NAME.err
