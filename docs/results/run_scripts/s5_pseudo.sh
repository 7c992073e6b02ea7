#!/bin/bash
# Session 5, issue 16 item 2: face5 train relabelled by dlib + the clean-fine-tuned teacher + MediaPipe's 68-point
# view (benchmarks/labeller_accuracy.py: 3.33 vs 3.51 for dlib+student on the AFW+HELEN val faces), in two halves
# run side by side (one thread each); both halves go into data.extra_train.
source "$(dirname "$0")/s4_common.sh"
TEACHER=${TEACHER:-$RUNS/tclean_w0/export/teacher.onnx}
OUT=${OUT:-/work/pseudo/face5-ens3}
head -5000 ../shared/data/face5/train.txt > $LISTS/face5_a.txt
tail -n +5001 ../shared/data/face5/train.txt > $LISTS/face5_b.txt
for h in a b; do
  $PY -m training pseudo-label --face5 --list $LISTS/face5_$h.txt --labeller "dlib+model:$TEACHER+mediapipe" \
    --out ${OUT}$h --threads 1 > $RUNS/pseudo_ens3$h.log 2>&1 &
done
wait
