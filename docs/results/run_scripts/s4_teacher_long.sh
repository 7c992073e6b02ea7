#!/bin/bash
# Session 4, issue 16 items 1 and 3: the teacher's long run, MobileNetV2 (ImageNet-initialised via the student)
# at 192 px, heatmap 24, continued from the 192 px resolution arm (s4_teacher_res.sh), alone on both cores.
source "$(dirname "$0")/s4_common.sh"
EXTRA=${EXTRA:-"[\"$PSEUDO\"]"}
INIT=${INIT:-$RUNS/tres_192/checkpoints/best.pt}
WAIT=${WAIT:-}
[ -n "$WAIT" ] && while pgrep -f "$WAIT" >/dev/null; do sleep 10; done
$PY -m training train --config training/configs/face68_student.json --run-dir $RUNS/teacher192 --no-export \
  --set model.input_size=192 --set model.heatmap_size=24 \
  --set "data.extra_train=$EXTRA" --set "data.train_list=\"$LISTS/train_afw_helen.txt\"" \
  --set 'train.select_sources=["afw","helen"]' --set train.epochs=${EPOCHS:-12} --set train.max_steps_per_epoch=141 \
  --set train.lr=${LR:-0.0003} --set train.threads=2 --set train.cpu_bf16=auto \
  --set "train.init_checkpoint=\"$INIT\"" --set train.export_name=teacher > $RUNS/teacher192.log 2> $RUNS/teacher192.err
