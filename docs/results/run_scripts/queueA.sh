#!/bin/bash
cd /work/main
PY=.venv/bin/python
while pgrep -f "run-dir runs/teacher " >/dev/null; do sleep 10; done
$PY -m training distill --config training/configs/face68_distill.json --run-dir runs/distill --set train.epochs=6 --set train.threads=1 > runs/distill.log 2> runs/distill.err
$PY -m training prune --config training/configs/face68_prune.json --run-dir runs/prune-0.25x --set train.threads=1 --set prune.layers_per_step=4 --set prune.finetune_steps=60 --set prune.final_epochs=3 --set train.epochs=3 --set train.export_name=student-0.25x > runs/prune.log 2> runs/prune.err
while [ ! -f runs/ablate-rate/reconstruction_50/ablation_done.json ]; do sleep 15; done
$PY -m training ablate-chain --run-dir runs/ablate-chain --teacher-run runs/teacher --student-run runs/student --distill-run runs/distill --prune-run runs/ablate-rate/reconstruction_50 --epochs 6 --set train.threads=1 > runs/ablate-chain.log 2> runs/ablate-chain.err
