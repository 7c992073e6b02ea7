#!/bin/bash
# A short lease's check (device tool, carry .gpu): benchmarks/gpu_step_breakdown.py for the ResNet-50 teacher at
# 192 px and the MobileNetV2 student at 128 px over the carried data copy, then three epochs of a real teacher run
# with 14 workers (the second epoch hung on session 12's first lease: training/jobs/engine.py worker_loader).
# Carry .gpu and .whl (training's CLI loads without torch-pruning now, but carry it all the same).
# Test here: DEVICE=cpu WORKERS="1 2" BATCH=8 SECONDS_EACH=2 EPOCH_STEPS=2 WORKERS_RUN=2 bash scripts/gpu/breakdown.sh
WORKERS=${WORKERS:-7 14}; BATCH=${BATCH:-64 256}; SECONDS_EACH=${SECONDS_EACH:-6}
EPOCH_STEPS=${EPOCH_STEPS:-40}; WORKERS_RUN=${WORKERS_RUN:-14}
source "$(dirname "$0")/common.sh"
COMMON=("${DATA_SETS[@]}" --set "data.extra_train=$PACKS")
timeout 90 $PY benchmarks/gpu_step_breakdown.py --config training/configs/face68_teacher.json "${COMMON[@]}" \
  --set model.input_size=192 --set model.heatmap_size=24 --workers $WORKERS --batch $BATCH --seconds $SECONDS_EACH
stamp "resnet50 192 rc $?"
timeout 60 $PY benchmarks/gpu_step_breakdown.py --config training/configs/face68_student.json "${COMMON[@]}" \
  --set 'train.pretrained="none"' --workers ${WORKERS##* } --batch $BATCH --seconds $SECONDS_EACH
stamp "mobilenetv2 128 rc $?"
rm -rf /tmp/kpd_epochs
timeout 90 $PY -m training train --config training/configs/face68_teacher.json --run-dir /tmp/kpd_epochs --no-export \
  "${COMMON[@]}" --set 'train.select_sources=["afw","helen"]' --set model.input_size=192 --set model.heatmap_size=24 \
  --set train.batch_size=64 --set train.epochs=3 --set train.max_steps_per_epoch=$EPOCH_STEPS \
  --set train.num_workers=$WORKERS_RUN > $OUT/epochs.log 2> $OUT/epochs.err
stamp "three epochs rc $?: $(grep -c '"metric"' $OUT/epochs.log) metric events"
grep '"progress"' $OUT/epochs.log | tail -1
