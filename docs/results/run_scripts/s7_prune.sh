#!/bin/bash
# Session 7, issue 16 item 5: a new 0.25x from STUDENT (the best student), heatmap head and the regression head's
# hidden layer left whole (as s4_prune.sh), fine-tuned with feature distillation from TEACHER on the human AFW/HELEN
# train faces + the face5-ens4 pack, flips keeping the AFW/HELEN label offset; both cores. NAME: run folder.
# ALPHA: the share of each prunable layer's filters removed (default 0.75 = the 0.25x; session 8's Table 5 rates:
# 0.5 and 0.9), EXPORT: the export name (default student-<keep>x). IGNORE: module-name prefixes left whole (default
# the heatmap head and the regression hidden layer; session 9 pruned the 50% model's heads alone: IGNORE='["backbone"]').
# SETS: more `--set key=value` words (no spaces inside a value).
source "$(dirname "$0")/s4_common.sh"
STUDENT=${STUDENT:?student checkpoint}; TEACHER=${TEACHER:?teacher checkpoint}; NAME=${NAME:-p7}; ALPHA=${ALPHA:-0.75}
PACKS=${PACKS:-"[\"/work/pseudo/face5-ens4a\",\"/work/pseudo/face5-ens4b\"]"}
$PY -m training prune --config training/configs/face68_prune.json --run-dir $RUNS/$NAME --no-export \
  --set "prune.student=\"$STUDENT\"" --set prune.alpha=$ALPHA --set "distill.teacher=\"$TEACHER\"" \
  --set "prune.ignore=${IGNORE:-[\"hm_head\",\"reg_head.fc1\"]}" --set prune.layers_per_step=4 --set prune.finetune_steps=60 \
  --set prune.final_epochs=${EPOCHS:-10} --set train.epochs=${EPOCHS:-10} --set train.max_steps_per_epoch=141 \
  --set "data.extra_train=$PACKS" --set "data.train_list=\"$LISTS/train_afw_helen.txt\"" \
  --set 'train.select_sources=["afw","helen"]' --set train.threads=${THREADS:-2} --set train.cpu_bf16=auto \
  --set 'data.label_offsets={"afw":[0.744,0.187],"helen":[0.466,-0.004]}' \
  --set train.export_name=${EXPORT:-student-0.25x} ${SETS:-} > $RUNS/$NAME.log 2> $RUNS/$NAME.err
