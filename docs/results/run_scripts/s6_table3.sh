#!/bin/bash
# Session 6, issue 16 item 6 (the paper's "regression vs + heatmap" row): two students from ImageNet-initialised
# MobileNetV2 at equal budget, the same faces (AFW/HELEN train + the relabelled face5 pack), the same seed and
# schedule; one with the regression head alone (model.heatmap_size=0), one with both heads (heatmap 16, the default).
source "$(dirname "$0")/s4_common.sh"
PACKS=${PACKS:-"[\"/work/pseudo/face5-ens4a\",\"/work/pseudo/face5-ens4b\"]"}
for HM in 0 16; do
  $PY -m training train --config training/configs/face68_student.json --run-dir $RUNS/t3_hm$HM --no-export \
    --set model.heatmap_size=$HM --set "data.extra_train=$PACKS" --set "data.train_list=\"$LISTS/train_afw_helen.txt\"" \
    --set 'train.select_sources=["afw","helen"]' --set train.epochs=${EPOCHS:-6} --set train.max_steps_per_epoch=141 \
    --set train.threads=2 --set train.cpu_bf16=auto > $RUNS/t3_hm$HM.log 2> $RUNS/t3_hm$HM.err
done
