# Sourced by the s4_*.sh run scripts: repository root as cwd, and the folders they share
# (run folders and pseudo packs live outside the repository; override through the environment).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
PY=.venv/bin/python
RUNS=${RUNS:-/work/runs}
PSEUDO=${PSEUDO:-/work/pseudo/face5-ens}
LISTS=${LISTS:-/work/pseudo/lists}
# Sessions 10-12: session 10's GPU-continued teacher (3.578, = models/teacher.onnx), the face5-ens5 pack (two halves,
# docs/results/run_scripts/s5_pseudo.sh) and the AFW/HELEN label offsets (python -m training label-offset)
T=${T:-$RUNS/gpu1/teacher.pt}
P='["/work/pseudo/face5-ens5a","/work/pseudo/face5-ens5b"]'
LO='--set data.label_offsets={"afw":[0.744,0.187],"helen":[0.466,-0.004]}'
