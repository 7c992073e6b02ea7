#!/bin/bash
# Session 11 (docs/results/chain_session11.md): the prune step of s11_queue.sh again without distillation
# (distill.lambda_dp 0 in the pruning fine-tune and its 10 final epochs; everything else equal: same student, same
# channel_multiple 16, same data, steps and seed), then the same human-label stage: METHOD.md's "fine-tuned with
# distillation" against plain fine-tuning, at equal steps. RUNS: run folders (default /work/runs).
source "$(dirname "$0")/s4_common.sh"
S=docs/results/run_scripts
STUDENT=$PWD/models/student.onnx TEACHER=$T NAME=p11_a16n ALPHA=0.5 IGNORE='["hm_head"]' EXPORT=student-0.5x \
  EPOCHS=10 PACKS="$P" SETS="--set prune.channel_multiple=16 --set distill.lambda_dp=0" bash $S/s7_prune.sh || exit 1
ln -sfn $RUNS/p11_a16n $RUNS/k_p11_a16n_1
ARM=p11_a16n STAGE1_FROM=p11_a16n LOUT=0 TEACHER=$T SETS="$LO" bash $S/s6_student_kd.sh
