# Sourced by the s4_*.sh run scripts: repository root as cwd, and the folders they share
# (run folders and pseudo packs live outside the repository; override through the environment).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
PY=.venv/bin/python
RUNS=${RUNS:-/work/runs}
PSEUDO=${PSEUDO:-/work/pseudo/face5-ens}
LISTS=${LISTS:-/work/pseudo/lists}
