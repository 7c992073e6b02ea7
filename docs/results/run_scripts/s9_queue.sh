#!/bin/bash
# Session 9, issue 16 item 5: the runs of docs/results/chain_session9.md, in the order they ran (one at a time, both
# cores). Starts from session 8's 50% model k_p8_50_2 (s7_prune.sh ALPHA=0.50 from the 3.90 student, then the
# human-label stage). RUNS: run folders (default /work/runs); T: the teacher checkpoint.
source "$(dirname "$0")/s4_common.sh"
S=docs/results/run_scripts
T=${T:-$RUNS/t7_clean_lo/checkpoints/best.pt}
LO='--set data.label_offsets={"afw":[0.744,0.187],"helen":[0.466,-0.004]}'
CONT="$LO --set distill.lambda_dp=0.5 --set train.ema_decay=0.98"  # one more round: 8 x 141 + the human stage

human_stage() {  # the prune job's run folder -> the human-label stage in k_NAME_2
  ln -sfn $RUNS/$1 $RUNS/k_$1_1
  ARM=$1 STAGE1_FROM=$1 LOUT=0 TEACHER=$T SETS="$LO" bash $S/s6_student_kd.sh
}
# 1. both heads of the 50% model halved (4.443)
STUDENT=$RUNS/k_p8_50_2/checkpoints/best.pt TEACHER=$T NAME=p9_h50 ALPHA=0.5 IGNORE='["backbone"]' \
  EXPORT=student-0.5x EPOCHS=10 bash $S/s7_prune.sh && human_stage p9_h50
# 2. progressive 0.25x: that model's backbone halved again (5.163)
STUDENT=$RUNS/k_p9_h50_2/checkpoints/best.pt TEACHER=$T NAME=p9_q25 ALPHA=0.5 EXPORT=student-0.25x EPOCHS=10 \
  bash $S/s7_prune.sh && human_stage p9_q25
# 3. one more round for the 50% model (4.169)
ARM=h50c INIT=$RUNS/k_p8_50_2/checkpoints/best.pt EPOCHS1=8 LOUT=0 TEACHER=$T SETS="$CONT" bash $S/s6_student_kd.sh
# 1b. from it, the regression hidden layer alone halved, lr 2e-4 (4.110)
STUDENT=$RUNS/k_h50c_2/checkpoints/best.pt TEACHER=$T NAME=p9_r50 ALPHA=0.5 IGNORE='["backbone","hm_head"]' \
  EXPORT=student-0.5x EPOCHS=10 SETS="--set train.lr=0.0002" bash $S/s7_prune.sh && human_stage p9_r50
# 2b. one more round for the progressive 0.25x (5.033)
ARM=q25c INIT=$RUNS/k_p9_q25_2/checkpoints/best.pt EPOCHS1=8 LOUT=0 TEACHER=$T SETS="$CONT" bash $S/s6_student_kd.sh
# 3b. one more round for the reg-pruned 50% model; 4. round 3 without distillation (lambda_dp 0), equal budget
ARM=r50c INIT=$RUNS/k_p9_r50_2/checkpoints/best.pt EPOCHS1=8 LOUT=0 TEACHER=$T SETS="$CONT" bash $S/s6_student_kd.sh
ARM=h50n INIT=$RUNS/k_p8_50_2/checkpoints/best.pt EPOCHS1=8 LOUT=0 TEACHER=$T \
  SETS="$LO --set distill.lambda_dp=0 --set train.ema_decay=0.98" bash $S/s6_student_kd.sh
# 5. student-0.5x (k_r50c_2) one round at 96 px input / 12 px heatmaps (pruned starts may change size at the same
#    stride): 4.742; then r96b, one more round from it
ARM=r96 INIT=$RUNS/k_r50c_2/checkpoints/best.pt EPOCHS1=8 LOUT=0 TEACHER=$T \
  SETS="$CONT --set model.input_size=96 --set model.heatmap_size=12" bash $S/s6_student_kd.sh
ARM=r96b INIT=$RUNS/k_r96_2/checkpoints/best.pt EPOCHS1=8 LOUT=0 TEACHER=$T \
  SETS="$CONT --set model.input_size=96 --set model.heatmap_size=12" bash $S/s6_student_kd.sh
