#!/bin/bash
# face5 ablation pair (regression+heatmap vs regression only, same 3-epoch budget), one thread.
cd /work/main
while pgrep -f "run-dir runs/abl_regonly " >/dev/null; do sleep 15; done
PY=.venv/bin/python
$PY -m training train --config training/configs/face5_student.json --run-dir runs/face5_reghm --set train.epochs=3 --set train.threads=1 --set train.export_name=student-5pt > runs/face5_reghm.log 2> runs/face5_reghm.err
$PY -m training train --config training/configs/face5_student.json --run-dir runs/face5_regonly --set train.epochs=3 --set train.threads=1 --set model.heatmap_size=0 --set train.export_name=abl-5pt-regonly > runs/face5_regonly.log 2> runs/face5_regonly.err
