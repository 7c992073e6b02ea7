#!/bin/bash
# Session 5, issue 16 items 2-3: the 3.93 teacher (s4_teacher_long.sh's best) trained on the face5 pack relabelled
# by dlib + teacher + MediaPipe (s5_pseudo.sh), then fine-tuned on the human AFW+HELEN train faces alone
# (s5_teacher_clean.sh, W=0). Alone on both cores. CLEAN_EPOCHS: epochs of that last stage (default 8; session 6's
# t6 ran it with 9, through an EPOCHS=9 that leaked into it before CLEAN_EPOCHS existed). PACK_ONLY=1 stops after the
# pack stage (session 7's t7, whose human-label stage ran as two arms of s5_teacher_clean.sh).
source "$(dirname "$0")/s4_common.sh"
PACKS=${PACKS:-"[\"/work/pseudo/face5-ens3a\",\"/work/pseudo/face5-ens3b\"]"}
NAME=${NAME:-trelabel}
INIT=${INIT:-$RUNS/teacher192/checkpoints/best.pt}
WAIT=${WAIT:-}
[ -n "$WAIT" ] && while pgrep -f "$WAIT" >/dev/null; do sleep 10; done
$PY -m training train --config training/configs/face68_student.json --run-dir $RUNS/$NAME --no-export \
  --set model.input_size=192 --set model.heatmap_size=24 \
  --set "data.extra_train=$PACKS" --set "data.train_list=\"$LISTS/train_afw_helen.txt\"" \
  --set 'train.select_sources=["afw","helen"]' --set train.epochs=${EPOCHS:-6} --set train.max_steps_per_epoch=141 \
  --set train.lr=${LR:-0.0002} --set train.threads=2 --set train.cpu_bf16=auto \
  --set "train.init_checkpoint=\"$INIT\"" --set train.export_name=teacher > $RUNS/$NAME.log 2> $RUNS/$NAME.err
[ "${PACK_ONLY:-0}" = "1" ] && exit 0
LAST=$RUNS/$NAME/checkpoints/last.pt
LR=${CLEAN_LR:-0.0001} EPOCHS=${CLEAN_EPOCHS:-8} W=0 NAME=${NAME}_clean INIT=$LAST bash "$(dirname "$0")/s5_teacher_clean.sh"
