#!/usr/bin/env bash
# The next GPU run of lavida-o-mini, prepared (model/README.md, "The next GPU run"). Two halves:
#
#   bash model/gpu_next.sh prepare   # here, on CPU (about 40 min on 2 cores alone; 75 min beside an evaluation): .devdata/prep-train.tar.xz and .devdata/ck.pt
#   bash model/gpu_next.sh run       # on the lent CUDA machine, from the repository root, one call of the device tool
#                                    # (timeout_s 600, carry [".devdata"]: it is git-ignored)
#   bash model/gpu_next.sh cpu STEPS [DECAY_TO]
#                                    # the same recipe on CPU for STEPS steps (the reproduction check), into /tmp/gpu-next-cpu;
#                                    # DECAY_TO: the GPU run's "end" (its run.json), so the learning rates are the same
#
# A lent machine takes at most 64 MiB of working tree, less than the package and the checkpoints: before the device
# call `bash model/gpu_next.sh slim-tree` takes them out of the index (and lists them in .git/info/exclude), after it
# `bash model/gpu_next.sh full-tree` puts them back. Nothing may be committed in between.
#
# The recipe: from the 0.4.x weights (checkpoints/lavida-o-mini-0.4.0.pt, step 39,366) with run 5's mix, plus
#   --gen-pos           a grid-cell table on the image tokens (the joint layers, the only ones that read the
#                       plan, do not know an image token's column: "Why planned images do not follow their plans")
#   t2i_plan weighted up, so the image side learns to follow a layout
#   --own               the model's own planned images, half of them right, as reflection examples (run 13)
# A --gen-pos checkpoint exports and serves as it is (the fixture and the check in that README section).
#
# Environment: START_CKPT (default the bundled weights), SECONDS_BUDGET (470), BATCH (128), LR (4e-4), LR_END (2e-5),
# OWN_COUNT (3000 own planned images), THREADS (2), PYTHON (/usr/bin/python3 here, python3 on the device).
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."
ROOT=$PWD
START_CKPT=${START_CKPT:-model/checkpoints/lavida-o-mini-0.4.0.pt}
OWN_COUNT=${OWN_COUNT:-3000}
THREADS=${THREADS:-2}
PY=${PYTHON:-/usr/bin/python3}   # prepare and cpu; device_run.sh picks its own (python3)
# one learning-rate schedule for the device run and its CPU reproduction
BATCH=${BATCH:-128} LR=${LR:-4e-4} LR_END=${LR_END:-2e-5}
BIG="models/lavida-o-mini model/checkpoints"   # over the 64 MiB a device call carries

RECIPE="--config mini-deep --edit-dropout 0.1 --plan-order prompt-first --plan-colours named --eos-weight 0.1"
RECIPE="$RECIPE --gen-pos --gen-pos-lr-scale 20 --own /tmp/prep/own --own-share 0.5 --own-right-share 0.5"
RECIPE="$RECIPE --task-weights und=0.25,ground=0.12,t2i_plan=0.3,reflect=0.15"

case "${1:-}" in
  prepare)
    [ -f libs/world/dist/cli/shards.js ] || npm run build
    [ -d /tmp/shards/train ] || node libs/world/dist/cli/shards.js --out /tmp/shards/train --seed 0 --count 60000
    (cd model
     [ -f /tmp/prep/train/tokens.npy ] || "$PY" -m lavida_mini.prepare --shard /tmp/shards/train --out /tmp/prep/train --codebook 8192
     # the starting weights' own planned images, labelled by the world scorer (run 13's data)
     [ -f /tmp/prep/own/info.json ] || "$PY" -m lavida_mini.own --checkpoint "$ROOT/$START_CKPT" --mode plan --threads "$THREADS" \
       --data /tmp/prep/train --count "$OWN_COUNT" --out /tmp/prep/own)
    mkdir -p .devdata
    tar -C /tmp/prep -cf - train own | xz -T2 -1 > .devdata/prep-train.tar.xz
    cp "$START_CKPT" .devdata/ck.pt
    ls -la .devdata
    echo "next, on the device: bash model/gpu_next.sh run   (timeout_s 600)"
    ;;
  run)
    [ -f .devdata/prep-train.tar.xz ] && [ -f .devdata/ck.pt ] || { echo "run bash model/gpu_next.sh prepare first" >&2; exit 2; }
    TRAIN_ARGS="$RECIPE" bash model/device_run.sh .devdata/prep-train.tar.xz .devdata/ck.pt \
      "${SECONDS_BUDGET:-470}" "$BATCH" "$LR" "$LR_END"
    ;;
  cpu)
    STEPS=${2:?usage: gpu_next.sh cpu STEPS [DECAY_TO]}
    OUT_DIR=/tmp/gpu-next-cpu
    mkdir -p $OUT_DIR && cp "$START_CKPT" $OUT_DIR/checkpoint.pt
    START=$("$PY" -c "import torch; print(torch.load('$OUT_DIR/checkpoint.pt', map_location='cpu', weights_only=False)['step'])")
    DECAY_TO=${3:-$((START + STEPS))}
    cd model && "$PY" -m lavida_mini.train --data /tmp/prep/train --out $OUT_DIR --threads "$THREADS" \
      --batch "$BATCH" --lr "$LR" --lr-end "$LR_END" --decay-from "$START" \
      --decay-to "$DECAY_TO" --steps $((START + STEPS)) $RECIPE
    ;;
  slim-tree)
    git rm -r -q --cached $BIG
    for p in $BIG; do
      grep -qxF "/$p/" .git/info/exclude 2>/dev/null || echo "/$p/" >> .git/info/exclude
    done
    git status --short | head -5
    ;;
  full-tree)
    for p in $BIG; do sed -i "\\#^/$p/\$#d" .git/info/exclude; done
    git reset -q -- $BIG
    git status --short | head -5
    ;;
  *)
    sed -n 2,23p "$SELF" >&2
    exit 2
    ;;
esac
