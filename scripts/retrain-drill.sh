#!/usr/bin/env bash
# The retraining drill of the replay issue, end to end and reproducible from its seeds:
#   1. record drives with the simulator (`vigil run --fast --record`), training seeds and
#      held-out seeds apart;
#   2. replay each drive and export its labelled crops (`vigil replay --export-dataset`:
#      every task, plus the visible ground-truth objects of every 4th camera frame);
#   3. fine-tune the degraded model on the training drives' crops, with simulator crops
#      mixed back in (`vigil train --init … --dataset … --samples …`);
#   4. compare degraded, shipped and retrained models on held-out data: the held-out
#      drives' crops and fresh simulator crops of a seed no model trained on.
#
# Usage: scripts/retrain-drill.sh OUT_DIR
# Environment: VIGIL (the binary), TRAIN_SEEDS, HELDOUT_SEEDS, SAMPLES, EPOCHS, LR.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: scripts/retrain-drill.sh OUT_DIR}
vigil=${VIGIL:-${CARGO_TARGET_DIR:-$root/target}/release/vigil}
train_seeds=${TRAIN_SEEDS:-"10 11 12 13 14 15"}
heldout_seeds=${HELDOUT_SEEDS:-"2"}
samples=${SAMPLES:-9000}
epochs=${EPOCHS:-10}
lr=${LR:-3e-3}
degraded=$root/models/obstacle-classifier-5pct
shipped=$root/models/obstacle-classifier
test -x "$vigil" || { echo "no vigil binary at $vigil (cargo build --release, or set VIGIL)" >&2; exit 1; }
mkdir -p "$out/drives" "$out/datasets"

# Every built-in scenario (clear-road adds the false alarms of its radar clutter).
scenarios=$("$vigil" scenarios | awk '{print $1}')

export_drive() { # seed scenario split
  local seed=$1 scenario=$2 split=$3
  local drive="$out/drives/$split-$scenario-$seed.mcap" ds="$out/datasets/$split/$scenario-$seed"
  if [ ! -s "$drive" ]; then
    "$vigil" run --scenario "$scenario" --seed "$seed" --fast --record "$drive.part" --json > /dev/null
    mv "$drive.part" "$drive"
  fi
  if [ ! -s "$ds/labels.jsonl" ]; then
    rm -rf "$ds"
    "$vigil" replay --source "$drive" --scenario "$scenario" --max --model "$shipped" \
      --export-dataset "$ds" --json > /dev/null
  fi
  echo "$ds"
}

train_sets=()
heldout_sets=()
for scenario in $scenarios; do
  for seed in $train_seeds; do train_sets+=("$(export_drive "$seed" "$scenario" train)"); done
  for seed in $heldout_seeds; do heldout_sets+=("$(export_drive "$seed" "$scenario" heldout)"); done
done
count() { cat "${@/%//labels.jsonl}" | wc -l; }
echo "training drives: ${#train_sets[@]} ($(count "${train_sets[@]}") crops); held-out drives: ${#heldout_sets[@]} ($(count "${heldout_sets[@]}") crops)"

train_args=()
for d in "${train_sets[@]}"; do train_args+=(--dataset "$d"); done
"$vigil" train --init "$degraded" "${train_args[@]}" --samples "$samples" --seed 21 \
  --epochs "$epochs" --lr "$lr" --name obstacle-classifier-retrained --out "$out/retrained"

heldout_args=()
for d in "${heldout_sets[@]}"; do heldout_args+=(--dataset "$d"); done
for model in "$shipped" "$out/retrained"; do
  "$vigil" eval --model "$degraded" --model "$model" "${heldout_args[@]}" --json \
    --confusion-png "$out/heldout-drives-$(basename "$model").png" > "$out/heldout-drives-$(basename "$model").json"
  "$vigil" eval --model "$degraded" --model "$model" --samples 1200 --seed 1000 --json \
    --confusion-png "$out/simulator-$(basename "$model").png" > "$out/simulator-$(basename "$model").json"
done
python3 - "$out" <<'EOF'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
for f in sorted(out.glob("*.json")):
    cmp = json.loads(f.read_text())
    print(f"{f.stem:45} " + "  ".join(f"{pathlib.Path(m['model_dir']).name} {m['accuracy']:.3f}" for m in cmp["models"]))
EOF
