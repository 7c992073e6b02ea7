#!/bin/bash
# Session 4, issue 16 item 2: do the relabelled YTF train frames (dlib+student pack) help the student?
# Same budget and start as the 128 px arm of s4_teacher_res.sh, with the YTF pack added to the training faces.
source "$(dirname "$0")/s4_common.sh"
YTF=${YTF:-/work/pseudo/ytf-ens}
while pgrep -f s4_teacher_res.sh >/dev/null; do sleep 10; done
$PY -m training train --config training/configs/face68_student.json --run-dir $RUNS/tres_128ytf --no-export \
  --set "data.extra_train=[\"$PSEUDO\",\"$YTF\"]" --set "data.train_list=\"$LISTS/train_afw_helen.txt\"" \
  --set 'train.select_sources=["afw","helen"]' --set train.epochs=3 --set train.max_steps_per_epoch=141 \
  --set train.lr=0.0003 --set train.threads=2 --set train.cpu_bf16=auto \
  --set "train.init_checkpoint=\"$PWD/models/student.onnx\"" > $RUNS/tres_128ytf.log 2> $RUNS/tres_128ytf.err
