#!/usr/bin/env bash
# One prepared training run of lavida-o-mini on a lent CUDA machine (see model/README.md, "Run 3").
#
#   bash model/device_run.sh DATA_TAR CHECKPOINT SECONDS BATCH LR LR_END
#
# DATA_TAR is `tar -cJf` of a prepared folder named train/ (prepare.py output), CHECKPOINT a slim or full
# train.py checkpoint. A 60-step probe from the same checkpoint measures steps/s, the run's length S is
# chosen so that it fits SECONDS, and the real run resumes the checkpoint with a cosine decay from its
# step to step+S (the step count and every argument are logged and stored in the checkpoint, so the same
# train.py command on CPU reaches the same model given the same steps). Results go to $OUT: the slim
# checkpoint in 15 MB parts (`cat ckpt.part.* > checkpoint.pt`), loss.csv, run.json.
# TRAIN_ARGS (env) adds train.py flags to the probe and the run, e.g.
#   TRAIN_ARGS="--eos-weight 0.1 --task-weights und=0.25,ground=0.15,plan=0.12,reflect=0.12"
# FOCUS_STEPS (env, default 0) runs the first steps of the run with FOCUS_ARGS added after TRAIN_ARGS (a
# curriculum: e.g. colour questions only, at the run's warm-up lr), then the rest resumes with the optimizer.
set -euo pipefail
DATA_TAR=$1 CKPT=$2 SECONDS_BUDGET=$3 BATCH=$4 LR=$5 LR_END=$6
export W=${WORK:-/tmp}
PY=${PYTHON:-python3}
OUT=${OUT:-$W/out}
mkdir -p "$OUT" $W/prep $W/run $W/probe
export PYTHONUNBUFFERED=1
tar -xJf "$DATA_TAR" -C $W/prep
cp "$CKPT" $W/run/checkpoint.pt
cp "$CKPT" $W/probe/checkpoint.pt
cd "$(dirname "$0")"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
START=$("$PY" -c "import torch; print(torch.load('$W/run/checkpoint.pt', map_location='cpu', weights_only=False)['step'])")
"$PY" -m lavida_mini.train --data $W/prep/train --out $W/probe --device "${DEVICE:-cuda}" --threads 4 \
  --batch "$BATCH" --lr "$LR" --steps $((START + 60)) --checkpoint-minutes 1000 ${TRAIN_ARGS:-} > $W/probe.log
RATE=$("$PY" - "$START" <<'EOF'
import csv, os, sys
start = int(sys.argv[1])
rows = {int(r["step"]): float(r["elapsed_s"]) for r in csv.DictReader(open(os.environ["W"] + "/probe/loss.csv"))}
print(50 / (rows[start + 60] - rows[start + 10]))
EOF
)
STEPS=$("$PY" -c "print(int($RATE * ($SECONDS_BUDGET - 20)))")
END=$((START + STEPS))
FOCUS_STEPS=${FOCUS_STEPS:-0}
echo "{\"start\": $START, \"steps_per_s\": $RATE, \"steps\": $STEPS, \"end\": $END, \"batch\": $BATCH, \"lr\": $LR, \"lr_end\": $LR_END, \"train_args\": \"${TRAIN_ARGS:-}\", \"focus_steps\": $FOCUS_STEPS, \"focus_args\": \"${FOCUS_ARGS:-}\"}" | tee "$OUT/run.json"
if [ "$FOCUS_STEPS" -gt 0 ]; then
  # The decay starts after the focus steps: they run at the warm-up / peak lr.
  "$PY" -m lavida_mini.train --data $W/prep/train --out $W/run --device "${DEVICE:-cuda}" --threads 4 \
    --batch "$BATCH" --lr "$LR" --lr-end "$LR_END" --decay-from $((START + FOCUS_STEPS)) --decay-to "$END" \
    --steps $((START + FOCUS_STEPS)) --minutes $("$PY" -c "print(($SECONDS_BUDGET + 60) / 60)") --checkpoint-minutes 1000 \
    ${TRAIN_ARGS:-} ${FOCUS_ARGS:-} | awk 'NR % 20 == 1'
  DECAY_FROM=$((START + FOCUS_STEPS))
else
  DECAY_FROM=$START
fi
"$PY" -m lavida_mini.train --data $W/prep/train --out $W/run --device "${DEVICE:-cuda}" --threads 4 \
  --batch "$BATCH" --lr "$LR" --lr-end "$LR_END" --decay-from "$DECAY_FROM" --decay-to "$END" --steps "$END" \
  --minutes $("$PY" -c "print(($SECONDS_BUDGET + 60) / 60)") --checkpoint-minutes 1000 ${TRAIN_ARGS:-} | awk 'NR % 20 == 1'
"$PY" - <<'EOF'
import os, torch
s = torch.load(os.environ["W"] + "/run/checkpoint.pt", map_location="cpu", weights_only=False)
s.pop("optimizer", None)
torch.save(s, os.environ["W"] + "/slim.pt")
print({"saved_step": s["step"], "elapsed_min": round(s["elapsed"] / 60, 1)})
EOF
split -b 15000000 -d $W/slim.pt "$OUT/ckpt.part."
cp $W/run/loss.csv "$OUT/loss.csv"
ls -la "$OUT"
