#!/usr/bin/env bash
# The default attack recipe (sigmoid loss) at 10% on-object, Stop -> Yield, on gtsrb-cnn (MODELS="..." for others):
# made on the 780 training Stop images, measured on the 270 test Stop images x the 33 default viewing conditions.
# The cross-entropy rows it is compared with are the same command with --loss ce (docs/runs/shape-2026-11-26/).
set -eu
cd "$(dirname "$0")"
PS=${PS:-../../../.venv/bin/patchscope}
for m in ${MODELS:-gtsrb-cnn}; do
  [ -s "$m/evaluate.json" ] && continue
  $PS attack --model "$m" --data gtsrb:train --source stop --target yield --size 0.1 --out "$m"
  $PS evaluate --patch "$m" --models "$m" --data gtsrb:test --source stop --target yield --json \
    >"$m/evaluate.json"
done
