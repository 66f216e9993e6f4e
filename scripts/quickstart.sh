#!/usr/bin/env bash
# Set up what is missing, then the main job on the built-in data: generate it (once), train
# configs/quickstart.yml, evaluate the best checkpoint on the test split, and run a sample search.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
start=$(date +%s)

if [ ! -f data/shapes/train_imgs.tsv ]; then
  $PY tools/make_data.py --out data/shapes
fi
$PY tools/train.py -c configs/quickstart.yml "$@"
best=output/quickstart/CN-CLIP-Tiny/best_model
$PY tools/eval.py -c configs/quickstart.yml -o Global.pretrained_model=$best DataLoader.Eval.dataset.split=test
# an image query: the first picture of the test split, written out as a PNG file
$PY - <<'PYEOF'
import base64
line = open("data/shapes/test_imgs.tsv", encoding="utf-8").readline()
open("data/shapes/query.png", "wb").write(base64.b64decode(line.split("\t")[1]))
PYEOF
$PY tools/infer.py -c configs/quickstart.yml -o Global.pretrained_model=$best \
  -o "Infer.query_images=['data/shapes/query.png']"
echo "quickstart finished in $(( $(date +%s) - start )) s (set-up excluded)"
