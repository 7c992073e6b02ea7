#!/bin/bash
# Session 17 (docs/results/chain_session17.md), issue 16 item 4: the paper's feature term given faces it can use
# and plain training cannot: session 16's setting (the student from its ImageNet weights, the 1,064 human AFW/HELEN
# train faces, one `training distill` stage per arm) plus an unlabelled pack U of as many faces at loss weight 0
# (data.extra_weight=0: their labels only place the crop; LOSS is the weighted mean over the labelled faces, so it
# never sees them). loss3 is a plain mean over the whole batch: at lambda_dp > 0 the student matches the teacher's
# pooled features on the unlabelled faces too. Batch 64 from the pooled 2 x 1,064 faces keeps ~32 labelled faces
# a step, as in session 16; EPOCHS x 33 steps. Both arms see the same batches (same seed); at lambda_dp 0 the
# unlabelled half only passes through BatchNorm.
# U (default /work/pseudo/ytf-unl): a face68-layout folder (train.txt + images); session 17's is 1,064 YouTube-Faces
# train frames drawn at random (seed 17) from ../shared/data/face68/train.txt, see chain_session17.md.
# Session 18 (chain_session18.md section 4): U=/work/pseudo/ytf-all, all 3,462 YTF train frames, with
# SETS="--set data.extra_share=0.5": every batch 32 human + 32 unlabelled faces, a fresh draw of U each epoch.
# LOUT=1: output distillation as well (distill.lambda_out, not in the paper, training/distill/outputs.py): the
# teacher labels every crop of the batch, the unlabelled ones included, and the student learns those labels with
# LOSS; with ARMS=0 that is output distillation alone (session 17: TAG=o...).
# Run folders: $RUNS/k_<PREFIX, default u><lambda><TAG>_1. Teacher T, ARMS, EPOCHS, LR, INIT, SETS as in
# s16_kd_human.sh, which runs the arms.
U=${U:-/work/pseudo/ytf-unl}
PREFIX=${PREFIX:-u} PACKS="[\"$U\"]" W=0 SETS="--set train.batch_size=64 ${SETS:-}" exec bash "$(dirname "$0")/s16_kd_human.sh"
