#!/bin/bash
# Session 11 (docs/results/chain_session11.md section 5): one round of s6_student_kd.sh on the dense shipped student,
# the round that took the re-pruned student-0.5x from 4.169 to 3.998 in four goes (8 x 141 steps on the human AFW/HELEN
# faces + the face5-ens5 pack with feature distillation, lambda_dp 0.5, and a 0.98 weight average, then 8 x 33 steps
# on the human faces). ARM names the run folders (default d11a); INIT the start (default models/student.onnx).
source "$(dirname "$0")/s4_common.sh"
ARM=${ARM:-d11a} INIT=${INIT:-$PWD/models/student.onnx} EPOCHS1=8 LOUT=0 TEACHER=$T PACKS="$P" \
  SETS="$LO --set distill.lambda_dp=0.5 --set train.ema_decay=0.98" bash docs/results/run_scripts/s6_student_kd.sh
