#!/bin/bash
# Teacher initialisation: face5 pre-training (1 epoch) then face68 with the teacher's config,
# stopped after 3 epochs, against the from-scratch teacher's epoch 3 (same lr so far).
cd /work/main
PY=.venv/bin/python
$PY -m training train --config training/configs/face68_teacher.json --run-dir runs/teacher_face5pre --no-export --set data.format=face5 --set 'data.root="{data}/face5"' --set data.val_list=test.txt --set model.num_points=5 --set train.epochs=1 --set train.threads=1 --set train.max_val_samples=300 > runs/teacher_face5pre.log 2> runs/teacher_face5pre.err
$PY -m training train --config training/configs/face68_teacher.json --run-dir runs/teacher_from5 --no-export --set train.epochs=20 --set train.threads=1 --set "train.init_checkpoint=\"$PWD/runs/teacher_face5pre/checkpoints/last.pt\"" > runs/teacher_from5.log 2> runs/teacher_from5.err &
pid=$!
while kill -0 $pid 2>/dev/null; do
  if grep -q '"event": "checkpoint".*"epoch": 3, "step": 0' runs/teacher_from5.log; then kill -TERM $pid; fi
  sleep 5
done
