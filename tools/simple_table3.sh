#!/usr/bin/env bash
# SIMPLE's Table 3 in miniature (README "SIMPLE"): configs/simple_small_mosaic.yaml, stage 1 (L_pose + L_det +
# grouping) for 300 steps once, then the same 200 stage-2 steps from that checkpoint three ways: (a) no
# mimicking, (d) predicted teacher heatmaps only, (e) GT + predicted teacher heatmaps (SIMPLE's). Same seed,
# data order and augmentation everywhere (the trainer resumes bit-identically); the teacher is MoveNet
# Thunder on each person's crop, its outputs cached, so (d) reads what (e) computed. Scored on the held-out
# coco-extra images 70-89 (COCO AP) and 200 mosaics of held-out LSP-Extended 9000-9999 (PCK@0.2).
# A fourth stage-2 run, e_det, mimics on the student's own boxes (Algorithm 1 as written).
# Usage: tools/simple_table3.sh [OUT_ROOT]   (about 1 h 30 min on a 2-core CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${POSEKIT_TEST_DATA:-../shared/data}
OUT=${1:-outputs/simple_table3}
PK=.venv/bin/posekit
CFG=configs/simple_small_mosaic.yaml
SET=(data.num_workers=0 "model.teacher_cache=$OUT/teacher_cache")
mkdir -p "$OUT"

# stage 1 once: 300 of the config's 500 steps (checkpoint every 50)
[ -f "$OUT/stage1/checkpoint.pt" ] || $PK train $CFG --set "${SET[@]}" --out "$OUT/stage1" --max-steps 300
# stage 2 three ways, each resumed from a copy of the stage-1 checkpoint
for run in a:none e:both d:pred; do
    name=${run%%:*} mimic=${run##*:}
    if [ ! -f "$OUT/$name/checkpoint.pt" ]; then mkdir -p "$OUT/$name" && cp "$OUT/stage1/checkpoint.pt" "$OUT/$name/"; fi
    $PK train $CFG --set "${SET[@]}" model.mimic=$mimic --out "$OUT/$name" --resume
done
# (e) with Algorithm 1's boxes: the student's own detections (its teacher outputs never repeat: a cache of its own)
if [ ! -f "$OUT/e_det/checkpoint.pt" ]; then mkdir -p "$OUT/e_det" && cp "$OUT/stage1/checkpoint.pt" "$OUT/e_det/"; fi
$PK train $CFG --set data.num_workers=0 "model.teacher_cache=$OUT/teacher_cache_det" model.mimic=both model.mimic_boxes=detected \
    --out "$OUT/e_det" --resume
# held-out COCO: coco-extra images 70-89 (never trained on)
.venv/bin/python - "$D" "$OUT/heldout.json" <<'PY'
import json, sys
from posekit.data.datasets import read_coco
d, out = sys.argv[1], sys.argv[2]
ann = f"{d}/coco-extra/annotations/person_keypoints_train2017.json"
ids = {s.image_id for s in read_coco(ann, f"{d}/coco-extra/train2017")[70:90]}
g = json.load(open(ann))
g["images"] = [i for i in g["images"] if i["id"] in ids]
g["annotations"] = [a for a in g["annotations"] if a["image_id"] in ids]
json.dump(g, open(out, "w"))
PY
for name in stage1 a d e e_det; do
    $PK eval --gt "$OUT/heldout.json" --images "$D/coco-extra/train2017" --model "$OUT/$name/checkpoint.pt" \
        --out "$OUT/$name/coco_heldout.json" --out-dir "$OUT/$name/coco_predictions"
    $PK eval --gt "$D/lspet/joints.mat" --images "$D/lspet/images" --range 9000 10000 --mosaics 200 --model "$OUT/$name/checkpoint.pt" \
        --out "$OUT/$name/mosaics.json" --out-dir "$OUT/$name/mosaic_predictions"
done
