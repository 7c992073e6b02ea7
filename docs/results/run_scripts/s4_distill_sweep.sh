#!/bin/bash
# Session 4, issue 16 item 4: lambda_dp sweep at equal budget from the shipped student, teacher = $TEACHER.
# Every run: 4 epochs x 141 steps x 32, lr 2e-4 with the default drops, same data, same seed; only lambda_dp differs.
# PREFIX names the run folders (default dl_).
source "$(dirname "$0")/s4_common.sh"
EXTRA=${EXTRA:-"[\"$PSEUDO\"]"}
TEACHER=${TEACHER:?teacher checkpoint}
WAIT=${WAIT:-}
[ -n "$WAIT" ] && while pgrep -f "$WAIT" >/dev/null; do sleep 10; done
for L in ${LAMBDAS:-0 1 0.5 2}; do
  $PY -m training distill --config training/configs/face68_distill.json --run-dir $RUNS/${PREFIX:-dl_}$L --no-export \
    --set "data.extra_train=$EXTRA" --set "data.train_list=\"$LISTS/train_afw_helen.txt\"" \
    --set 'train.select_sources=["afw","helen"]' --set train.epochs=${EPOCHS:-4} --set train.max_steps_per_epoch=141 \
    --set train.lr=0.0002 --set train.threads=${THREADS:-2} --set train.cpu_bf16=auto \
    --set "train.init_checkpoint=\"$PWD/models/student.onnx\"" --set "distill.teacher=\"$TEACHER\"" \
    --set distill.lambda_dp=$L > $RUNS/${PREFIX:-dl_}$L.log 2> $RUNS/${PREFIX:-dl_}$L.err
done
