#!/usr/bin/env bash
# DistilPose's Table 4 / Table 6 in miniature on LSP-Extended: the same student (same seed, steps, data,
# schedule) trained on the regression loss alone and with Simulated Heatmaps + confidence (L_SH, L_CS) from
# MoveNet Lightning's heatmaps on the student's own crops; once with the token encoder (DistilPose) and once
# as the CNN variant (pooling + linear, Table 6). PCK@0.2 on the held-out images 9000-9999 is printed at the
# end of each run (and written to each run's summary.json). About an hour on a 2-core CPU.
# The last three runs train the token teacher (configs/distilpose_teacher_small_lspet.yaml, ~25 min) and then
# distil from it: Simulated Heatmaps alone, and with token distillation (L_KT, L_VT) as well: Table 4's rows.
set -euo pipefail
P=.venv/bin/posekit
O=${OUT:-outputs/train}
C=configs/distilpose_small_lspet.yaml
$P train $C --set 'model.teacher=""' --out $O/dp_none                                            # L_reg alone
$P train $C --out $O/dp_sh                                                                       # + L_SH + L_CS (MoveNet Lightning)
$P train $C --set model.keypoint_reduction=mean --out $O/dp_sh_mean                               # + L_SH + L_CS averaged over K (official code)
$P train $C --set model.teacher_peaks=normalised --out $O/dp_sh_norm                            # + L_SH on peak-normalised teacher maps
$P train $C --set model.encoder=pooled 'model.teacher=""' --out $O/dp_cnn_none                 # CNN variant, L_reg alone
$P train $C --set model.encoder=pooled model.keypoint_reduction=mean --out $O/dp_cnn_sh_mean      # CNN variant + L_SH + L_CS, mean over K
$P train $C --set model.sh_start=250 --out $O/dp_sh_start250                                     # L_SH + L_CS (summed) join at step 250
$P train configs/distilpose_teacher_small_lspet.yaml --out $O/dp_teacher                           # the token teacher (TokenPose-style)
$P train $C --set model.teacher=$O/dp_teacher/checkpoint.pt model.token_distill=false model.keypoint_reduction=mean --out $O/dp_tsh
$P train $C --set model.teacher=$O/dp_teacher/checkpoint.pt model.keypoint_reduction=mean --out $O/dp_tall   # + L_KT + L_VT: all
# COCO-17 (AP with ground-truth boxes on coco-extra 70-89, never trained on), MoveNet Lightning as the teacher:
$P train configs/distilpose_small_coco.yaml --set 'model.teacher=""' --out $O/dp_coco_none               # L_reg alone
$P train configs/distilpose_small_coco.yaml --out $O/dp_coco_sh                                        # + L_SH + L_CS (mean over K)
