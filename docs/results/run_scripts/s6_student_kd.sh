#!/bin/bash
# Session 6, issue 16 item 4: output distillation (distill.lambda_out) against none, at equal budget, from the shipped
# student, with TEACHER. Two stages per arm, both `training distill` (the teacher's forward ran in every arm; since
# session 13 an arm with LOUT 0 skips it, as lambda_dp is 0 here: the same steps, faster):
#   1. 4 x 141 steps, lr 2e-4: AFW/HELEN train (human) + the relabelled face5 pack, pack faces weighted W;
#   2. 8 x 33 steps, lr 1e-4: the human AFW/HELEN train faces alone (the session-5 last stage).
# LOUT is lambda_out in both stages (0 = no distillation); lambda_dp 0 throughout (the paper's pooled term moved
# nothing in sessions 4-5). ARM names the run folders k_ARM_1 and k_ARM_2. LOUT2 sets stage 2's lambda_out apart
# (default LOUT); STAGE1_FROM=OTHER skips stage 1 and starts stage 2 from k_OTHER_1's last checkpoint.
# PACKS2 / W2: extra packs and their weight in stage 2 (default none: human faces alone; session 7's last-stage arm:
# PACKS2=$PACKS W2=0.2). SETS: more `--set key=value` words for both stages (no spaces inside a value; session 7:
# data.label_offsets). LR1: stage 1's learning rate (default 2e-4). EPOCHS2=0: stage 1 alone (s16_kd_human.sh).
source "$(dirname "$0")/s4_common.sh"
TEACHER=${TEACHER:?teacher checkpoint}
PACKS=${PACKS:-"[\"/work/pseudo/face5-ens4a\",\"/work/pseudo/face5-ens4b\"]"}
INIT=${INIT-$PWD/models/student.onnx}  # INIT="": no checkpoint, the config's ImageNet start (s13_kd_imagenet.sh)
ARM=${ARM:?arm name}; W=${W:-1}; LOUT=${LOUT:-0}
stage() {  # name init extra weight epochs steps lr
  $PY -m training distill --config training/configs/face68_distill.json --run-dir $RUNS/$1 --no-export \
    --set "data.extra_train=$3" --set data.extra_weight=$4 --set "data.train_list=\"$LISTS/train_afw_helen.txt\"" \
    --set 'train.select_sources=["afw","helen"]' --set train.epochs=$5 --set train.max_steps_per_epoch=$6 \
    --set train.lr=$7 --set train.threads=${THREADS:-2} --set train.cpu_bf16=auto \
    --set "train.init_checkpoint=\"$2\"" --set "distill.teacher=\"$TEACHER\"" \
    --set distill.lambda_dp=0 --set distill.lambda_out=$LOUT ${SETS:-} > $RUNS/$1.log 2> $RUNS/$1.err
}
FIRST=${STAGE1_FROM:-$ARM}
if [ -z "${STAGE1_FROM:-}" ]; then stage k_${ARM}_1 "$INIT" "$PACKS" $W ${EPOCHS1:-4} 141 ${LR1:-0.0002} || exit 1; fi
[ "${EPOCHS2:-8}" = 0 ] && exit 0
LOUT=${LOUT2:-$LOUT} stage k_${ARM}_2 $RUNS/k_${FIRST}_1/checkpoints/last.pt "${PACKS2:-[]}" ${W2:-1} ${EPOCHS2:-8} 33 0.0001
