#!/bin/bash
# Session 4, issue 16 item 5: 0.25x from the shipped student, fine-tuned with feature distillation from the
# 192 px teacher. Heatmap head and the regression head's hidden layer (reg_head.fc1) left whole.
source "$(dirname "$0")/s4_common.sh"
STUDENT=${STUDENT:-$PWD/models/student.onnx}
TEACHER=${TEACHER:-$RUNS/teacher192/checkpoints/best.pt}
$PY -m training prune --config training/configs/face68_prune.json --run-dir $RUNS/p025 --no-export \
  --set "prune.student=\"$STUDENT\"" --set "distill.teacher=\"$TEACHER\"" \
  --set 'prune.ignore=["hm_head","reg_head.fc1"]' --set prune.layers_per_step=4 --set prune.finetune_steps=60 \
  --set prune.final_epochs=${EPOCHS:-20} --set train.epochs=${EPOCHS:-20} --set train.max_steps_per_epoch=141 \
  --set "data.extra_train=[\"$PSEUDO\"]" --set "data.train_list=\"$LISTS/train_afw_helen.txt\"" \
  --set 'train.select_sources=["afw","helen"]' --set train.threads=${THREADS:-1} --set train.cpu_bf16=auto \
  --set train.export_name=student-0.25x > $RUNS/p025.log 2> $RUNS/p025.err
