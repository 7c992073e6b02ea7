#!/bin/bash
cd /work/main
PY=.venv/bin/python
while pgrep -f "bash runs/queue2.sh" >/dev/null; do sleep 10; done
$PY -m training ablate-lambda --run-dir runs/ablate-lambda --lambdas 0,0.2,0.5,1,2,5 --epochs 1 --train-samples 2000 --set train.threads=1 > runs/ablate-lambda.log 2> runs/ablate-lambda.err
while [ ! -f runs/distill/export/student.onnx ]; do sleep 15; done
$PY -m training ablate-rate --run-dir runs/ablate-rate --rates 50,10,30,70,90 --epochs 1 --steps 5 --train-samples 1500 --set train.threads=1 --set prune.layers_per_step=7 > runs/ablate-rate.log 2> runs/ablate-rate.err
