#!/bin/bash
# Session 5, issue 16 items 4-5: lambda_dp sweep at equal budget on the human AFW+HELEN train faces (the step that
# moved the teacher 3.93 -> 3.74), from INIT (the shipped student, or the shipped 0.25x) with TEACHER.
# POOL=spatial: distillation per cell of the student's 4 x 4 grid instead of the paper's pooled vector.
# Every run: EPOCHS x 33 steps x 32 (the 1,064 faces once an epoch), lr 1e-4 then the default drops, same seed.
source "$(dirname "$0")/s4_common.sh"
TEACHER=${TEACHER:?teacher checkpoint}
INIT=${INIT:-$PWD/models/student.onnx}
TAG=${TAG:-student}
WAIT=${WAIT:-}
[ -n "$WAIT" ] && while pgrep -f "$WAIT" >/dev/null; do sleep 10; done
for L in ${LAMBDAS:-0 1 0.5 2}; do
  $PY -m training distill --config training/configs/face68_distill.json --run-dir $RUNS/c_${TAG}_$L --no-export \
    --set "data.extra_train=[]" --set "data.train_list=\"$LISTS/train_afw_helen.txt\"" \
    --set 'train.select_sources=["afw","helen"]' --set train.epochs=${EPOCHS:-8} --set train.max_steps_per_epoch=33 \
    --set train.lr=${LR:-0.0001} --set train.threads=${THREADS:-2} --set train.cpu_bf16=auto \
    --set "train.init_checkpoint=\"$INIT\"" --set "distill.teacher=\"$TEACHER\"" \
    --set distill.lambda_dp=$L --set distill.pool=\"${POOL:-global}\" > $RUNS/c_${TAG}_$L.log 2> $RUNS/c_${TAG}_$L.err
done
