#!/bin/bash
# Issue 16 on a lent GPU machine, one command (the device tool runs it in the repository root, $OUT comes back):
#   A. two teachers side by side, each in two stages (the human AFW/HELEN train faces + the relabelled face5 pack,
#      then the human faces alone), inside time budgets: the shipped MobileNetV2 teacher continued (192 px) and
#      the paper's ResNet-50 from scratch (192 px);
#   B. the better of the two (AFW+HELEN val) distilled into the shipped student at equal budget, lambda_dp in
#      {0, 0.5, 1, 2}, the four arms side by side, the same two stages each (fixed epochs; the time budget is a
#      safety net only, and the steps each arm ran are in its log);
#   C. scripts/gpu/collect.py: the weights worth bringing back (half precision) + every run's log into $OUT.
# Carried (ignored by git): .gpu/data.tgz (scripts/gpu/pack_data.py, then tar), .gpu/init/{teacher,student}.onnx
# (the shipped models, exported with --fp16-weights) or .gpu/init/teacher.pt (a slim checkpoint an earlier lease
# brought back: then it also stands as a candidate teacher for phase B, scored by the best it records),
# .whl/ (torch-pruning, missing there).
# DEADLINE (s, 0 = none): every stage's timeout is cut so that the script ends by then, collection included, and
# the teacher is collected into $OUT as soon as phase A ends, so a call stopped at its limit still brings it back.
# Test it here first on the CPU with tiny budgets:
#   DEVICE=cpu STEPS=2 TA1=5 TA2=5 TB=5 E1=2 E2=2 WORKERS_A=1 WORKERS_B=1 bash scripts/gpu/teacher_distill.sh
R=${R:-/tmp/kpd_runs}
TA1=${TA1:-180}; TA2=${TA2:-45}    # phase A time budgets per stage (s)
BATCH_A=${BATCH_A:-64}             # phase A batch (session 12's lease measured 256 at 1.7x the img/s of 64)
E1=${E1:-8}; E2=${E2:-16}          # phase B epochs per stage (pack + human faces: ~163 steps of 64; human: 17)
TB=${TB:-150}                      # phase B safety budget per stage (s)
WORKERS_A=${WORKERS_A:-7}; WORKERS_B=${WORKERS_B:-3}
TEACHERS=${TEACHERS-tmnv2 tr50}; STUDENTS=${STUDENTS-0 0.5 1 2}  # the arms (STUDENTS="": phase A alone)
STEPS=${STEPS:-0}                  # steps per epoch at most (0: all; a small number for the CPU test)
# Phase B's start: the shipped student (.gpu/init/student.onnx, a fine-tune) or S_INIT=imagenet, the paper's protocol:
# the student trained from ImageNet weights with the teacher from its first step (carry the torchvision file as
# .gpu/init/mobilenet_v2-b0353104.pth: kpdesk.assets fetches it here); S_LR1: stage 1's learning rate (set below).
DEADLINE=${DEADLINE:-0}; RESERVE=${RESERVE:-40}  # collection's share of the deadline (s)
source "$(dirname "$0")/common.sh"
S_INIT=${S_INIT:-$G/init/student.onnx}; S_LR1=${S_LR1:-0.0002}
mkdir -p "$R"
cap() {  # a stage's timeout: $1 s, or less so that the deadline keeps RESERVE s for collection (at least 5)
  local t=$1
  if [ "$DEADLINE" -gt 0 ]; then
    local left=$(( DEADLINE - RESERVE - ($(date +%s) - START) ))
    [ $left -lt $t ] && t=$left
    [ $t -lt 5 ] && t=5
  fi
  echo $t
}
LO='data.label_offsets={"afw":[0.744,0.187],"helen":[0.466,-0.004]}'
COMMON=("${DATA_SETS[@]}" --set 'train.select_sources=["afw","helen"]' --set "$LO" --set train.batch_size=64
        --set train.threads=2 --set train.max_steps_per_epoch=$STEPS)

teacher() {  # name config lr init: two stages, NAME = pack stage, then NAME_h = the human faces alone (lr 1e-4)
  local name=$1 config=$2 lr=$3 init=$4
  local geo=(--set model.input_size=192 --set model.heatmap_size=24 --set train.num_workers=$WORKERS_A
             --set train.batch_size=$BATCH_A) first=()
  [ -n "$init" ] && first=(--set "train.init_checkpoint=\"$init\"")
  timeout $(cap $((TA1 + 60))) $PY -m training train --config $config --run-dir $R/$name --no-export "${COMMON[@]}" \
    "${geo[@]}" --set "data.extra_train=$PACKS" --set data.extra_weight=1 --set train.epochs=200 \
    --set train.lr=$lr --set train.time_budget_s=$TA1 "${first[@]}" \
    > $R/$name.log 2> $R/$name.err
  stamp "teacher $name stage 1 rc $?"
  timeout $(cap $((TA2 + 40))) $PY -m training train --config $config --run-dir $R/${name}_h --no-export "${COMMON[@]}" \
    "${geo[@]}" --set 'data.extra_train=[]' --set train.epochs=60 --set train.lr=0.0001 \
    --set train.time_budget_s=$TA2 --set "train.init_checkpoint=\"$R/$name/checkpoints/last.pt\"" \
    > $R/${name}_h.log 2> $R/${name}_h.err
  stamp "teacher $name stage 2 rc $?"
}
TM_INIT=$G/init/teacher.onnx; CARRIED=()
[ -f $G/init/teacher.pt ] && TM_INIT=$G/init/teacher.pt && CARRIED=($G/init/teacher.pt)
for t in $TEACHERS; do
  case $t in
    tmnv2) teacher tmnv2 training/configs/face68_student.json 0.0002 $TM_INIT & ;;
    tr50) teacher tr50 training/configs/face68_teacher.json ${TR50_LR:-0.001} "${TR50_INIT:-}" & ;;
  esac
done
wait
T=$($PY scripts/gpu/collect.py --runs $R --pick-teacher $(for t in $TEACHERS; do echo ${t}_h; done) "${CARRIED[@]}") \
  || T=$R/tmnv2_h/checkpoints/best.pt
stamp "phase B teacher: $T"
$PY scripts/gpu/collect.py --runs $R --out "$OUT" --teacher "$T" > $R/collect_a.log 2>&1
stamp "phase A collected: $(ls $OUT | tr '\n' ' ')"

student() {  # lambda_dp
  local a=kd$1 init=(--set "train.init_checkpoint=\"$S_INIT\"")
  [ "$S_INIT" = imagenet ] && init=(--set 'train.init_checkpoint=""'
                                    --set "train.pretrained=\"$G/init/mobilenet_v2-b0353104.pth\"")
  timeout $(cap $((TB + 60))) $PY -m training distill --config training/configs/face68_distill.json --run-dir $R/${a} \
    --no-export "${COMMON[@]}" --set "data.extra_train=$PACKS" --set data.extra_weight=1 --set train.epochs=$E1 \
    --set train.lr=$S_LR1 --set train.time_budget_s=$TB --set train.num_workers=$WORKERS_B \
    "${init[@]}" --set "distill.teacher=\"$T\"" \
    --set distill.lambda_dp=$1 --set distill.lambda_out=0 > $R/${a}.log 2> $R/${a}.err
  stamp "student $a stage 1 rc $?"
  timeout $(cap $((TB + 60))) $PY -m training distill --config training/configs/face68_distill.json --run-dir $R/${a}_h \
    --no-export "${COMMON[@]}" --set 'data.extra_train=[]' --set train.epochs=$E2 --set train.lr=0.0001 \
    --set train.ema_decay=0.98 --set train.time_budget_s=$TB --set train.num_workers=$WORKERS_B \
    --set "train.init_checkpoint=\"$R/${a}/checkpoints/last.pt\"" --set "distill.teacher=\"$T\"" \
    --set distill.lambda_dp=$1 --set distill.lambda_out=0 > $R/${a}_h.log 2> $R/${a}_h.err
  stamp "student $a stage 2 rc $?"
}
for dp in $STUDENTS; do student $dp & done
wait
$PY scripts/gpu/collect.py --runs $R --out "$OUT" --teacher "$T"
stamp "done"
