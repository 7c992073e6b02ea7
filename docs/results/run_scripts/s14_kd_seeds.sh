#!/bin/bash
# Session 14 (docs/results/chain_session14.md), issue 16 item 4: session 13's protocol (s13_kd_imagenet.sh: the
# student from its ImageNet weights, the teacher's pooled-feature term from the first step or not at all) with stage
# 1 at lr 5e-4 instead of 1e-3. At 1e-3 a second seed of the no-distillation arm hit a loss spike at epochs 9-10 and
# ended 0.38 worse than the first, eight times the gain being measured. Arms, paired by seed and in this order
# (SEEDS, ARMS override): lambda_dp 0 and 1 on seed 0, then both on seed 1. Run folders $RUNS/k_in<lambda>l5<s>_1/_2.
set -u
cd "$(dirname "$0")"
for s in ${SEEDS:-0 1}; do
  for dp in ${ARMS:-0 1}; do
    TAG=l5s$s LR1=0.0005 ARMS=$dp SETS="--set train.seed=$s" bash ./s13_kd_imagenet.sh || exit 1
  done
done
