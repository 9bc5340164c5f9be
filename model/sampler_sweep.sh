#!/usr/bin/env bash
# Sampler sweep of a checkpoint on mini-GenEval, plain text-to-image only (no plan, no reflection):
# temperature x guidance x steps [x order cutoff x alg temp], the same prompts and seeds for every setting.
#   model/sampler_sweep.sh CKPT [PROMPTS] [OUTDIR]   (run from the repository root; needs /tmp/prep/eval, /tmp/shards/eval)
# A setting is T:G:STEPS or T:G:STEPS:CUTOFF:ALGTEMP (evaluate.py --order-cutoff / --alg-temp: image steps past
# CUTOFF of the schedule reveal the most confident positions). REFINER=path decodes through a trained refiner.
# EXTRA="--correction-sweeps 4 --correction-guidance 0 ..." adds evaluate.py arguments to every setting (TAG=name names
# them in the output files, e.g. TAG=cs4).
# Writes OUTDIR/<setting>.json (evaluate.py's quality file) and prints one line per setting.
set -euo pipefail
ckpt=$(realpath "$1"); prompts=${2:-20}; out=$(realpath -m "${3:-/tmp/sampler-sweep}")
mkdir -p "$out"
refiner=${REFINER:+$(realpath "$REFINER")}   # before the cd: REFINER may be relative to the caller
cd "$(dirname "$0")"
settings=${SETTINGS:-"1.0:3:16 0.7:3:16 0.5:3:16 1.0:5:16 0.7:5:16 0.3:3:16 1.0:3:32"}
for s in $settings; do
  IFS=: read -r temp guid steps cutoff alg <<<"$s"
  cutoff=${cutoff:-1.0}; alg=${alg:-1.0}
  name="t${temp}-g${guid}-s${steps}"
  [ "$cutoff" = "1.0" ] || name="$name-c${cutoff}-a${alg}"
  [ -z "${TAG:-}" ] || name="$name-$TAG"
  [ -f "$out/$name.json" ] || nice -n 15 /usr/bin/python3 -m lavida_mini.evaluate --checkpoint "$ckpt" --data /tmp/prep/eval \
      --shard /tmp/shards/eval --parts t2i --plain-only --prompts "$prompts" --temperature "$temp" --guidance "$guid" \
      --steps "$steps" --order-cutoff "$cutoff" --alg-temp "$alg" ${refiner:+--refiner "$refiner"} --threads 1 ${EXTRA:-} --workdir "/tmp/sweep-work/$name" --out "$out/$name.json" > "$out/$name.log" 2>&1
  /usr/bin/python3 - "$out/$name.json" "$name" <<'PY'
import json, sys
q = json.load(open(sys.argv[1])); t = q["scores"]["t2i"]["plain"] if "plain" in q["scores"]["t2i"] else q["scores"]["t2i"]
print(sys.argv[2], json.dumps({k: t[k] for k in t if k in ("overall", "clean", "objects", "objectsPerImage")}))
PY
done
