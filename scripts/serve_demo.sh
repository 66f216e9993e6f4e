#!/usr/bin/env bash
# Start the service on the built-in data: generate the shapes data and train the quickstart model (once,
# a few minutes on 2 cores), export it, sign it as a package (a demo key made here), build image and
# text galleries of the test split, make an admin token, then serve on http://127.0.0.1:8080 (/docs).
# Extra arguments go to tools/serve.py (e.g. -o Server.port=9000). Re-running signs a new sequence.
# Another trained model: CONFIG=<its training config> BEST=<its best_model dir> DATA=<dataset root>.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
demo=output/serve_demo
CONFIG=${CONFIG:-configs/quickstart.yml}
# the newest quickstart run (scripts/quickstart.sh writes output/quickstart/run-<UTC time>/), else train one
newest=$(find output/quickstart -maxdepth 3 -path '*/CN-CLIP-Tiny/best_model' 2>/dev/null | sort | tail -1)
BEST=${BEST:-${newest:-output/quickstart/CN-CLIP-Tiny/best_model}}
DATA=${DATA:-data/shapes96}  # the quickstart's data (96 px)
model=cn-clip-tiny-shapes
mkdir -p "$demo"

[ -f "$DATA/test_imgs.tsv" ] || $PY tools/make_data.py --out "$DATA" --image-size 96
[ -d "$BEST" ] || $PY tools/train.py -c "$CONFIG"   # the quickstart: a few minutes on 2 idle cores
if [ ! -f "$demo/export/inference.yml" ]; then
  $PY tools/export_model.py -c "$CONFIG" -o Global.pretrained_model="$BEST" \
    -o Global.save_inference_dir="$demo/export" --graphs image text --no-int8
fi

# a demo signing key (unencrypted: demo only; production keys stay in OpenSSL, a KMS or an SDF device)
if [ ! -f "$demo/signer.key" ]; then
  $PY tools/package.py keygen --out "$demo/signer.key" --unencrypted
fi
rm -rf "$demo/package"
cp -r "$demo/export" "$demo/package"
$PY tools/package.py sign "$demo/package" --key "$demo/signer.key" --model "$model" --version "1.0.0" \
  --sequence "$(date +%s)" --valid-days 30
$PY tools/package.py verify "$demo/package" --trust "$demo/signer.pub" --model "$model" --no-state

for kind in image text; do
  $PY tools/build_index.py --package "$demo/package" --trust "$demo/signer.pub" --package_model "$model" \
    --package_state "$demo/package_sequences.json" --data "$DATA" --split test --kind "$kind" \
    --out "$demo/galleries/${kind}s"
done

if [ ! -f "$demo/token" ]; then
  (umask 077 && $PY tools/serve.py token --tokens "$demo/tokens" --name demo --role admin > "$demo/token")
fi
cp configs/serving/quickstart.yml "$demo/serve.yml"   # for benchmarks/*_serving.py --deployment $demo
echo "token for Authorization: Bearer ...: $(cat "$demo/token")   (also in $demo/token)"
echo "try: curl -s -H \"Authorization: Bearer \$(cat $demo/token)\" -H 'Content-Type: application/json' \\"
echo "       -d '{\"text\": \"红色的圆形\", \"k\": 3}' http://127.0.0.1:8080/v1/search/text-to-image"
exec $PY tools/serve.py -c configs/serving/quickstart.yml "$@"
