#!/usr/bin/env bash
# Warm-started vs random-init heads, with and without pseudo-labels (docs/warm_start.md, #33 items 2 and 5): for each
# whole-image family the same config, seed and steps with the graph's head shape (model.head_shape: separable), heads
# from MoveNet MultiPose (model.init_heads: movenet_multipose; at the full rate, train.warm_heads_lr) or random.
# Run names are FAMILY_ARM[_DATA]: FAMILY hh | pd | simple, ARM warm | cold, DATA
#   (none)  the config's own data: coco-extra 0-69, coco-mini and LSP mosaics (the first rows of docs/warm_start.md);
#   labels  coco-extra 0-69 and LSP mosaics only: coco-mini stays out, so it scores as held out;
#   pseudo  labels + MoveNet Thunder's pseudo-labels of LSP-Extended 0-8999 and the clips (tools/distilpose_coco17.sh
#           makes them: outputs/pseudo/thunder/pseudo_labels-*.json; PSEUDO=FILE picks another).
# Each run resumes where it stopped (checkpoints every 100 / 50 steps), so rerun the script after a kill or in the
# next session; finished runs are skipped. Then score them all on the same images:
#   .venv/bin/python tools/eval_families.py movenet-multipose OUT/*/checkpoint.pt
# STEPS=N shortens every run to N steps (the cosine schedule then spans N): an ablation on a budget, equal across rows.
# EXTRA="key=value ..." adds settings to every run (one experiment per OUT_ROOT), e.g. EXTRA=model.coarse_targets=positives.
# Usage: tools/warm_start_runs.sh [OUT_ROOT] [RUN ...]   (e.g. hh_warm_pseudo hh_cold_labels; about 35-40 min each on a
#        2-core CPU, one at a time: two at once thrash the 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/warm_start}
shift || true
PK=.venv/bin/posekit
WARM=(model.head_shape=separable model.init_heads=movenet_multipose)
COLD=(model.head_shape=separable)
PD=(model.strides=[4] model.channels=16)
SIMPLE=("model.teacher_cache=$OUT/teacher_cache")
declare -A CONFIG=([hh]=configs/higherhrnet_small_mosaic.yaml [pd]=configs/posedet_small_mosaic.yaml [simple]=configs/simple_small_mosaic.yaml)

run() {  # NAME: family_arm[_data]
    local name=$1 family arm data sets=()
    IFS=_ read -r family arm data <<< "$name"
    if [ "$arm" = warm ]; then sets+=("${WARM[@]}"); else sets+=("${COLD[@]}"); fi
    [ "$family" = pd ] && sets+=("${PD[@]}")
    [ "$family" = simple ] && sets+=("${SIMPLE[@]}")
    case "${data:-}" in
        "") ;;
        labels) sets+=("data.extra_train=[]") ;;
        pseudo) local labels=${PSEUDO:-$(ls -t outputs/pseudo/thunder/pseudo_labels-*.json | head -1)}
                sets+=("data.extra_train=[{ann: $labels, images: \"\"}]") ;;
        *) echo "unknown data arm in $name: use labels or pseudo" >&2; exit 2 ;;
    esac
    [ -n "${STEPS:-}" ] && sets+=("train.steps=$STEPS")
    [ -n "${EXTRA:-}" ] && read -ra extra <<< "$EXTRA" && sets+=("${extra[@]}")
    local resume=()
    [ -f "$OUT/$name/checkpoint.pt" ] && resume=(--resume)
    echo "== $name: ${CONFIG[$family]} --set ${sets[*]}"
    $PK train "${CONFIG[$family]}" --set "${sets[@]}" --out "$OUT/$name" --quiet "${resume[@]}"
}

for name in "${@:-hh_warm hh_cold pd_warm pd_cold simple_warm simple_cold}"; do
    for n in $name; do run "$n"; done
done
