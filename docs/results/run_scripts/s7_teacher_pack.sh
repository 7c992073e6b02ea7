#!/bin/bash
# Session 7, issue 16 item 1: one more pack round for the teacher (s5_teacher_relabel.sh's first stage alone):
# EPOCHS x 141 steps at LR from INIT on the human AFW/HELEN train faces + the face5-ens4 pack, both cores.
# The human-label stage is run apart (s5_teacher_clean.sh), so that its arms can start from the same weights.
source "$(dirname "$0")/s4_common.sh"
PACKS=${PACKS:-"[\"/work/pseudo/face5-ens4a\",\"/work/pseudo/face5-ens4b\"]"}
NAME=${NAME:?run name}; INIT=${INIT:?start checkpoint}
$PY -m training train --config training/configs/face68_student.json --run-dir $RUNS/$NAME --no-export \
  --set model.input_size=192 --set model.heatmap_size=24 \
  --set "data.extra_train=$PACKS" --set "data.train_list=\"$LISTS/train_afw_helen.txt\"" \
  --set 'train.select_sources=["afw","helen"]' --set train.epochs=${EPOCHS:-6} --set train.max_steps_per_epoch=141 \
  --set train.lr=${LR:-0.0001} --set train.threads=2 --set train.cpu_bf16=auto \
  --set "train.init_checkpoint=\"$INIT\"" --set train.export_name=teacher > $RUNS/$NAME.log 2> $RUNS/$NAME.err
