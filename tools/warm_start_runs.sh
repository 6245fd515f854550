#!/usr/bin/env bash
# Warm-started vs random-init heads (docs/warm_start.md, #33 item 5): for each whole-image family the same
# config, seed, data and steps with the graph's head shape (model.head_shape: separable), heads from
# MoveNet MultiPose (model.init_heads: movenet_multipose; at the full rate, train.warm_heads_lr) or random.
# Each run resumes where it stopped (checkpoints every 100 / 50 steps), so rerun the script after a kill
# or in the next session; finished runs are skipped. Then score them all on the same images:
#   .venv/bin/python tools/eval_families.py movenet-multipose OUT/*/checkpoint.pt
# Usage: tools/warm_start_runs.sh [OUT_ROOT] [RUN ...]   (runs: hh_warm hh_cold pd_warm pd_cold simple_warm simple_cold;
#        about 35-40 min each on a 2-core CPU, one at a time: two at once thrash the 2 cores)
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

run() {  # NAME: family_arm
    local name=$1 family=${1%%_*} arm=${1##*_} sets=()
    if [ "$arm" = warm ]; then sets+=("${WARM[@]}"); else sets+=("${COLD[@]}"); fi
    [ "$family" = pd ] && sets+=("${PD[@]}")
    [ "$family" = simple ] && sets+=("${SIMPLE[@]}")
    local resume=()
    [ -f "$OUT/$name/checkpoint.pt" ] && resume=(--resume)
    echo "== $name: ${CONFIG[$family]} --set ${sets[*]}"
    $PK train "${CONFIG[$family]}" --set "${sets[@]}" --out "$OUT/$name" --quiet "${resume[@]}"
}

for name in "${@:-hh_warm hh_cold pd_warm pd_cold simple_warm simple_cold}"; do
    for n in $name; do run "$n"; done
done
