#!/usr/bin/env bash
# DistilPose's Table 4 (and Table 6's CNN variant) in miniature on LSP-Extended: the token teacher first, then
# the same student (same seed, steps, data, schedule) with each set of losses. PCK@0.2 on the held-out
# images 9000-9999 is printed at the end of each run (and in each run's metrics.json). ~2 h on a 2-core CPU.
set -euo pipefail
P=.venv/bin/posekit
O=${OUT:-outputs/train}
T=$O/distilpose_teacher_small_lspet/checkpoint.pt
[ -f "$T" ] || $P train configs/distilpose_teacher_small_lspet.yaml --out $O/distilpose_teacher_small_lspet
$P train configs/distilpose_small_lspet.yaml --set model.teacher=$T --out $O/dp_all                                # L_reg + SH + CS + KT + VT
$P train configs/distilpose_small_lspet.yaml --set model.teacher=$T --set model.token_distill=false --out $O/dp_sh  # L_reg + SH + CS
$P train configs/distilpose_small_lspet.yaml --set 'model.teacher=""' --out $O/dp_none                                  # L_reg alone
# Table 6: the CNN variant (pooling + linear on the same trunk), alone and with Simulated Heatmaps from MoveNet Thunder
$P train configs/distilpose_small_lspet.yaml --set model.encoder=pooled --set 'model.teacher=""' --out $O/dp_cnn_none
$P train configs/distilpose_small_lspet.yaml --set model.encoder=pooled --set model.teacher=movenet-thunder --out $O/dp_cnn_movenet
