#!/bin/bash
# Session 7: the last stage on human + pack faces (pack weighted 0.2, its labels shifted into the offset convention)
# instead of human faces alone, from k_lo_ps_1 last (s6_student_kd.sh ARM=lo_ps with data.extra_label_shift). Measured
# once: 4.02 best against 3.90 for the human-only stage.
cd /work/main
.venv/bin/python -m training distill --config training/configs/face68_distill.json --run-dir /work/runs/k_lo_psw2_2 --no-export \
  --set 'data.extra_train=["/work/pseudo/face5-ens4a","/work/pseudo/face5-ens4b"]' --set data.extra_weight=0.2 \
  --set 'data.train_list="/work/pseudo/lists/train_afw_helen.txt"' --set 'train.select_sources=["afw","helen"]' \
  --set train.epochs=8 --set train.max_steps_per_epoch=33 --set train.lr=0.0001 --set train.threads=2 --set train.cpu_bf16=auto \
  --set 'train.init_checkpoint="/work/runs/k_lo_ps_1/checkpoints/last.pt"' --set 'distill.teacher="/work/runs/t7_clean_lo/checkpoints/best.pt"' \
  --set distill.lambda_dp=0 --set distill.lambda_out=0 \
  --set 'data.label_offsets={"afw":[0.744,0.187],"helen":[0.466,-0.004]}' --set 'data.extra_label_shift=[0.0051,0.0005]' \
  > /work/runs/k_lo_psw2_2.log 2> /work/runs/k_lo_psw2_2.err
