#!/usr/bin/env bash
# Set up what is missing, then the main job on the built-in data: generate it at 96 px (once), train
# configs/quickstart.yml, evaluate the best checkpoint on the test split (recall and attribute precision), and
# run sample searches: each result is marked ✓ when its scene satisfies the query, and drawn in a grid PNG.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
start=$(date +%s)

data=data/shapes96
if [ ! -f "$data/test_scenes.jsonl" ]; then
  $PY tools/make_data.py --out "$data" --image-size 96
fi
# every run gets its own folder, so a re-run never replaces an earlier run's results
run=output/quickstart/run-$(date -u +%Y%m%d-%H%M%S)
# one data-parallel process per core (at most 2): Paddle's CPU kernels use one thread each. The global batch stays
# the config's 128 (64 per process), so the run computes what one process would, and repeats on the same CPU type.
procs=$($PY -c "import hardware; print(hardware.cpu_training_processes(2))")
batch=$($PY -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['DataLoader']['Train']['sampler']['batch_size'])" \
  configs/quickstart.yml)
train=(tools/train.py)
if [ "$procs" -gt 1 ]; then  # rank 0 prints the log; every rank's is in $run/launch_logs
  train=(-m paddle.distributed.launch --log_level ERROR --nproc_per_node "$procs" --log_dir "$run/launch_logs" "${train[@]}")
fi
PYTHONWARNINGS="ignore:No ccache found" $PY "${train[@]}" -c configs/quickstart.yml -o Global.output_dir="$run" \
  DataLoader.Train.sampler.batch_size=$((batch / procs)) "$@"
best=$run/CN-CLIP-Tiny/best_model
$PY tools/eval.py -c configs/quickstart.yml -o Global.output_dir="$run" Global.pretrained_model="$best" \
  DataLoader.Eval.dataset.split=test
# an image query: the first picture of the test split, written out as a PNG file in the run folder
$PY - "$run/query.png" "$data/test_imgs.tsv" <<'PYEOF'
import base64, sys
line = open(sys.argv[2], encoding="utf-8").readline()
open(sys.argv[1], "wb").write(base64.b64decode(line.split("\t")[1]))
PYEOF
$PY tools/infer.py -c configs/quickstart.yml -o Global.output_dir="$run" Global.pretrained_model="$best" \
  -o "Infer.query_images=['$run/query.png']"
echo "results in $run (retrieval grid: $run/CN-CLIP-Tiny/infer_grid.png)"
echo "quickstart finished in $(( $(date +%s) - start )) s (set-up excluded)"
