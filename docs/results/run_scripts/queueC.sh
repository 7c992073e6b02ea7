#!/bin/bash
# Open choices of METHOD.md section 1 at a truncated budget: the student's 15-epoch config
# stopped after 3 epochs (same lr schedule as the student's first 3 epochs, no drop yet).
cd /work/main
PY=.venv/bin/python
while pgrep -f "prune-0.25x-long" >/dev/null; do sleep 10; done
run3() {  # name, overrides...
  local name=$1; shift
  $PY -m training train --config training/configs/face68_student.json --run-dir runs/$name --set train.epochs=15 --set train.threads=1 --no-export "$@" > runs/$name.log 2> runs/$name.err &
  local pid=$!
  while kill -0 $pid 2>/dev/null; do
    if [ "$(grep -c '"event": "checkpoint".*"epoch": 3, "step": 0' runs/$name.log)" -ge 1 ]; then kill -TERM $pid; fi
    sleep 5
  done
}
run3 hm3_last --set model.hm_source=last
run3 hm3_size32 --set model.heatmap_size=32 --set train.sigma=1.5
