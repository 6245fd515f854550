#!/usr/bin/env bash
# posekit distill on real unlabelled inputs (README "posekit distill"): the same student
# (configs/lspet_lightning_fpn_128.yaml, 500 steps, seed 0) trained (1) on LSP-Extended's labels and (2) on
# MoveNet Thunder's poses of the same 9 000 images (labels unused) + the shared clips + coco-mini's images;
# both scored, beside the teacher itself, on the held-out LSP-Extended images 9000-9999 (PCK@0.2).
# Usage: tools/distill_lspet.sh [OUT_ROOT]   (about 1 h 40 min on a 2-core CPU; the distill steps resume when rerun)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${POSEKIT_TEST_DATA:-../shared/data}
OUT=${1:-outputs/distill_lspet}
PK=.venv/bin/posekit
VAL=(--gt "$D/lspet/joints.mat" --images "$D/lspet/images" --range 9000 10000)

# (2) label-free: teacher pass (~30 min), pseudo-labels, student, score on the held-out LSP images
$PK distill --teacher topdown-thunder --det-thr 0.3 --student configs/lspet_lightning_fpn_128.yaml \
    --images "$D/lspet/images/im0[0-8]???.jpg" "$D/lspet/images/im09000.jpg" "$D"/videos/*.mp4 "$D/coco-mini/train2017" \
    --out "$OUT/distilled" --val "$D/lspet/joints.mat" --val-images "$D/lspet/images" --val-range 9000 10000
# (1) the same student on the labels of the same 9 000 images
$PK train configs/lspet_lightning_fpn_128.yaml --out "$OUT/labelled"
$PK eval "${VAL[@]}" --model "$OUT/labelled/checkpoint.pt" --out "$OUT/labelled/val.json" --out-dir "$OUT/labelled/val_predictions"
# the teacher itself on the same boxes
$PK eval "${VAL[@]}" --model topdown-thunder --out "$OUT/teacher_val.json" --out-dir "$OUT/teacher_predictions"
# a looser pseudo-label filter on the same teacher pass (cached: nothing recomputed)
$PK distill --teacher topdown-thunder --det-thr 0.3 --student configs/lspet_lightning_fpn_128.yaml \
    --images "$D/lspet/images/im0[0-8]???.jpg" "$D/lspet/images/im09000.jpg" "$D"/videos/*.mp4 "$D/coco-mini/train2017" \
    --out "$OUT/distilled_loose" --teacher-cache "$OUT/distilled/teacher_cache" --kpt-thr 0.2 --person-thr 0.1 --min-keypoints 4 \
    --val "$D/lspet/joints.mat" --val-images "$D/lspet/images" --val-range 9000 10000
# COCO-17 on coco-extra (never an input): the distilled student and the teacher
G=(--gt "$D/coco-extra/annotations/person_keypoints_train2017.json" --images "$D/coco-extra/train2017")
$PK eval "${G[@]}" --model "$OUT/distilled/student/checkpoint.pt" --out "$OUT/distilled/coco_extra.json" --out-dir "$OUT/distilled/coco_extra_predictions"
$PK eval "${G[@]}" --model topdown-thunder --out "$OUT/teacher_coco_extra.json" --out-dir "$OUT/teacher_coco_extra_predictions"
# three times the steps, both students
$PK distill --teacher topdown-thunder --det-thr 0.3 --student configs/lspet_lightning_fpn_128.yaml \
    --images "$D/lspet/images/im0[0-8]???.jpg" "$D/lspet/images/im09000.jpg" "$D"/videos/*.mp4 "$D/coco-mini/train2017" \
    --out "$OUT/distilled_1500" --teacher-cache "$OUT/distilled/teacher_cache" --set train.steps=1500 \
    --val "$D/lspet/joints.mat" --val-images "$D/lspet/images" --val-range 9000 10000
$PK train configs/lspet_lightning_fpn_128.yaml --set train.steps=1500 --out "$OUT/labelled_1500"
$PK eval "${VAL[@]}" --model "$OUT/labelled_1500/checkpoint.pt" --out "$OUT/labelled_1500/val.json" --out-dir "$OUT/labelled_1500/val_predictions"
$PK eval "${G[@]}" --model "$OUT/distilled_1500/student/checkpoint.pt" --out "$OUT/distilled_1500/coco_extra.json" --out-dir "$OUT/distilled_1500/coco_extra_predictions"
