# Sourced by the scripts a lent GPU machine runs (scripts/gpu/*.sh): paths, the clock, the carried wheels and the
# carried data copy (unpacked, and the --set words that point a run at it). G: the carried folder (.gpu); D: where the
# data unpacks; OUT: what comes back; PY: python.
set -u
export PYTHONUNBUFFERED=1
G=$(cd "${G:-.gpu}" && pwd) || exit 1; OUT=${OUT:-/tmp/kpd_out}; D=${D:-/tmp/kpd_data}
PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT" "$D"
START=$(date +%s)
stamp() { echo "[$(( $(date +%s) - START )) s] $*"; }
if ls .whl/*.whl >/dev/null 2>&1; then  # torch-pruning: the machine's image lacks it (training prune needs it)
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/kpd_site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/kpd_site:$PWD
else
  export PYTHONPATH=$PWD
fi
tar xzf $G/data.tgz -C "$D" || exit 1
DATA=$D/data
# The carried copy as the runs read it (scripts/gpu/pack_data.py): the human AFW/HELEN faces' lists and the device,
# and the two halves of the relabelled face5 pack
DATA_SETS=(--set "data.root=\"$DATA/face68\"" --set 'data.train_list="train_afw_helen.txt"'
           --set 'data.val_list="val_afw_helen.txt"' --set "train.device=\"$DEVICE\"")
PACKS="[\"$DATA/face5-ens5a\",\"$DATA/face5-ens5b\"]"
nvidia-smi -L 2>/dev/null; stamp "data unpacked: $(du -sh $DATA | cut -f1)"
