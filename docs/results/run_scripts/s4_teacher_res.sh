#!/bin/bash
# Session 4, issue 16 item 3: what the teacher gets from input resolution, at equal budget.
# Three arms from the shipped student (MobileNetV2, ImageNet init, 128 px), each 3 epochs x 141 steps x 32,
# lr 3e-4 with the default drops, heatmap = input / 8, on AFW/HELEN train + the dlib+student pseudo pack;
# best epoch on AFW+HELEN val. Run alone on both cores.
source "$(dirname "$0")/s4_common.sh"
while [ ! -f "$PSEUDO/pack.json" ]; do sleep 10; done
for S in ${SIZES:-192 160 128}; do
  H=$((S / 8))
  nice -n 0 $PY -m training train --config training/configs/face68_student.json --run-dir $RUNS/tres_$S --no-export \
    --set model.input_size=$S --set model.heatmap_size=$H \
    --set "data.extra_train=[\"$PSEUDO\"]" --set "data.train_list=\"$LISTS/train_afw_helen.txt\"" \
    --set 'train.select_sources=["afw","helen"]' --set train.epochs=3 --set train.max_steps_per_epoch=141 \
    --set train.lr=0.0003 --set train.threads=2 --set train.cpu_bf16=auto \
    --set "train.init_checkpoint=\"$PWD/models/student.onnx\"" > $RUNS/tres_$S.log 2> $RUNS/tres_$S.err
done
