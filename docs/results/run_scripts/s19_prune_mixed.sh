#!/bin/bash
# Session 19 (docs/results/chain_session19.md), issue 16 item 5: a 0.25x that keeps what is worth its bytes.
# One `training prune` job from the shipped student (models/student.onnx, 3.89): 75% of every layer's filters
# pruned by reconstruction error except the layers ALPHAS names (prune.alpha_by_prefix, module prefix -> own share;
# default: the last stage, backbone.features.14-18, at 50%), the heatmap head left whole (as the shipped 0.25x);
# 4 layers a step with fine-tuning after each (prune.finetune_steps=60, but a fine-tuning epoch ends after one pass
# over the 1,064 human faces: 33 steps of 32 + 32 ran), then EPOCHS x 33 steps. Data and loss: session 18's lever, output
# distillation from the teacher (models/teacher.onnx, lambda_out 1, no feature term) on batches of 32 human
# AFW/HELEN train faces + 32 of all 3,462 YouTube-Faces train frames unlabelled (U, loss weight 0: only the
# teacher's labels teach on them; chain_session18.md section 4 builds the pack), flips keeping the AFW/HELEN label
# offset, a 0.98 weight average, val on the AFW+HELEN part of val. ALPHAS: a JSON object, or one of the session's
# three arms by name: late (the default), early (backbone.features.0-6 at 50%, the rest at 75%: the shipped
# student-0.25x of session 19, followed by the human stage of s16_kd_human.sh), uniform ('{}', 75% everywhere).
# NAME: run folder under $RUNS; EXPORT: export name; SETS: more `--set key=value` words.
source "$(dirname "$0")/s4_common.sh"
NAME=${NAME:-p19_late50}
U=${U:-/work/pseudo/ytf-all}
half() { local o="" i; for i in "$@"; do o="$o,\"backbone.features.$i\":0.5"; done; echo "{${o#,}}"; }
case "${ALPHAS:-late}" in
  late) ALPHAS=$(half 14 15 16 17 18) ;;
  early) ALPHAS=$(half 0 1 2 3 4 5 6) ;;
  uniform) ALPHAS='{}' ;;
esac
$PY -m training prune --config training/configs/face68_prune.json --run-dir $RUNS/$NAME --no-export \
  --set "prune.student=\"$PWD/models/student.onnx\"" --set prune.alpha=0.75 --set "prune.alpha_by_prefix=$ALPHAS" \
  --set 'prune.ignore=["hm_head"]' --set prune.layers_per_step=4 --set prune.finetune_steps=60 \
  --set prune.final_epochs=${EPOCHS:-50} --set train.epochs=${EPOCHS:-50} --set train.max_steps_per_epoch=33 \
  --set train.batch_size=64 --set data.extra_share=0.5 --set data.extra_weight=0 --set "data.extra_train=[\"$U\"]" \
  --set "distill.teacher=\"$PWD/models/teacher.onnx\"" --set distill.lambda_dp=0 --set distill.lambda_out=1 \
  --set "data.train_list=\"$LISTS/train_afw_helen.txt\"" --set "data.val_list=\"$LISTS/val_afw_helen.txt\"" \
  --set 'train.select_sources=["afw","helen"]' --set train.threads=${THREADS:-2} --set train.cpu_bf16=auto \
  --set train.ema_decay=0.98 $LO --set train.export_name=${EXPORT:-student-0.25x} ${SETS:-} \
  > $RUNS/$NAME.log 2> $RUNS/$NAME.err
