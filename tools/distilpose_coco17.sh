#!/usr/bin/env bash
# DistilPose on COCO-17 (#33 item 3, docs/distilpose_coco17.md): MoveNet Thunder's pseudo-labels of the unlabelled
# images (LSP-Extended 0-8999, labels unused, and the shared clips; `posekit distill --teacher-only`, cached and
# resumable), then the student of configs/distilpose_coco17_thunder.yaml on coco-extra 0-69's labels + those
# pseudo-labels, with Simulated Heatmaps from Thunder ("sh") and without them ("reg": L_reg alone; same seed, data,
# steps), then both beside MoveNet Lightning on the same boxes (detector and ground truth, coco-mini and coco-extra
# 70-89, never trained on). Rerun after a kill: every stage resumes.
# Usage: tools/distilpose_coco17.sh [OUT_ROOT] [RUN ...]   (runs: sh reg; teacher pass ~50 min, each run ~1 h)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${POSEKIT_TEST_DATA:-../shared/data}
OUT=${1:-outputs/distilpose_coco17}
shift || true
PK=.venv/bin/posekit
CONFIG=configs/distilpose_coco17_thunder.yaml
PSEUDO=outputs/pseudo/thunder  # shared with other students of the same teacher pass

$PK distill --teacher topdown-thunder --det-thr 0.3 --student $CONFIG --teacher-only --out $PSEUDO \
    --images "$D/lspet/images/im0[0-8]???.jpg" "$D/lspet/images/im09000.jpg" "$D"/videos/*.mp4
labels=$(ls -t $PSEUDO/pseudo_labels-*.json | head -1)
EXTRA="data.extra_train=[{ann: $labels, images: \"\"}]"

for run in "${@:-sh reg}"; do
    for r in $run; do
        sets=("$EXTRA")
        [ "$r" = reg ] && sets+=('model.teacher=""')
        resume=()
        [ -f "$OUT/$r/checkpoint.pt" ] && resume=(--resume)
        echo "== $r: $CONFIG --set ${sets[*]}"
        $PK train $CONFIG --set "${sets[@]}" --out "$OUT/$r" --quiet "${resume[@]}"
    done
done
.venv/bin/python tools/eval_families.py --gt-boxes --out outputs/eval_families topdown-lightning "$OUT"/*/checkpoint.pt
