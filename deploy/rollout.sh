#!/usr/bin/env bash
# Roll a signed model package out to a government-cloud Kubernetes cluster. Nothing is built, pushed or
# applied unless the package verifies first (SM2 signature by a trusted key, model name, SM3 of every file,
# expiry, and a sequence not below this rollout host's record nor the one running in the cluster).
#
#   deploy/rollout.sh --package DIR --galleries DIR --trust signer.pub --model NAME --tokens FILE \
#       --overlay x86-64|arm64|loong64|ascend|kunlun|cluster --registry REG \
#       --serve-image REG/paddle-mm/serve@sha256:<digest> [--engine docker|isula] [--state FILE] [--dry-run]
#
# --dry-run verifies, renders and validates the manifests (kubernetes-validate --strict) into a temporary
# directory and prints its path; nothing is built or applied. Exit codes: the package tool's (10-14) for a
# refused package, 2 for bad usage, 3 for a missing tool, 4 for a rollback below the running sequence.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
PY=${PYTHON:-$root/.venv/bin/python}

usage() { sed -n '2,13p' "$0" >&2; exit 2; }
package="" galleries="" trust="" model="" tokens="" overlay="" registry="" serve_image=""
engine=docker state="" dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --package) package=$2; shift 2 ;;
    --galleries) galleries=$2; shift 2 ;;
    --trust) trust=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --overlay) overlay=$2; shift 2 ;;
    --registry) registry=$2; shift 2 ;;
    --serve-image) serve_image=$2; shift 2 ;;
    --engine) engine=$2; shift 2 ;;
    --state) state=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    *) echo "unknown argument $1" >&2; usage ;;
  esac
done
for name in package galleries trust model tokens overlay registry serve_image; do
  [ -n "${!name}" ] || { echo "--${name//_/-} is required" >&2; usage; }
done
[ -d "$here/k8s/overlays/$overlay" ] || { echo "--overlay $overlay: not in $here/k8s/overlays" >&2; exit 2; }
[[ "$serve_image" == *@sha256:* ]] || { echo "--serve-image $serve_image is not pinned by digest" >&2; exit 2; }
case "$engine" in docker|isula) ;; *) echo "--engine $engine: use docker or isula" >&2; exit 2 ;; esac
command -v kubectl >/dev/null || { echo "kubectl is needed to render (kubectl kustomize) and apply" >&2; exit 3; }

# 1. verify: the gate before anything else (the service verifies again on the bytes it loads)
state_args=()
[ -n "$state" ] && state_args=(--state "$state")
summary=$("$PY" "$root/tools/package.py" verify "$package" --trust "$trust" --model "$model" --json \
  "${state_args[@]}") || exit $?
sequence=$(printf '%s' "$summary" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["sequence"])')
version=$(printf '%s' "$summary" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["version"])')
echo "verified $model $version (sequence $sequence)"

# 2. rollback protection against what runs now (pods start with an empty state file)
if [ "$dry_run" = 0 ]; then
  running=$(kubectl -n paddle-mm get deployment paddle-mm \
    -o jsonpath='{.metadata.annotations.paddle-mm/package-sequence}' 2>/dev/null || echo 0)
  if [ "${running:-0}" -gt "$sequence" ]; then
    echo "REFUSED rollback: the cluster runs sequence $running, this package is $sequence" >&2
    exit 4
  fi
fi

# 3. the model image: the verified package and its galleries, pushed and pinned by digest
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model_image="$registry/paddle-mm/model@sha256:0000000000000000000000000000000000000000000000000000000000000000"
if [ "$dry_run" = 0 ]; then
  mkdir -p "$work/ctx"
  cp -r "$package" "$work/ctx/package"
  cp -r "$galleries" "$work/ctx/galleries"
  tag="$registry/paddle-mm/model:$version"
  base=${MODEL_BASE_IMAGE:?set MODEL_BASE_IMAGE to a small base pinned by digest (busybox@sha256:...)}
  if [ "$engine" = docker ]; then
    docker build -f "$here/docker/Dockerfile.model" --build-arg "BASE_IMAGE=$base" -t "$tag" "$work/ctx"
    docker push "$tag"
    model_image=$(docker inspect --format '{{index .RepoDigests 0}}' "$tag")
  else
    isula-build ctr-img build -f "$here/docker/Dockerfile.model" --build-arg "BASE_IMAGE=$base" \
      -o "docker://$tag" "$work/ctx"
    model_image="$tag@$(skopeo inspect --format '{{.Digest}}' "docker://$tag")"
  fi
fi

# 4. render: an overlay of the chosen target with the digests, the secrets and the verified sequence
mkdir -p "$work/k8s/secrets"
cp -r "$here/k8s/base" "$here/k8s/overlays" "$work/k8s/"
cp "$tokens" "$work/k8s/secrets/tokens"
cp "$trust" "$work/k8s/secrets/signer.pub"
mkdir -p "$work/k8s/rollout"
cat > "$work/k8s/rollout/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../overlays/$overlay
secretGenerator:
  - name: paddle-mm-secrets
    behavior: replace
    files:
      - tokens=../secrets/tokens
      - signer.pub=../secrets/signer.pub
images:
  - name: registry.example.gov.cn/paddle-mm/serve
    newName: ${serve_image%@*}
    digest: ${serve_image#*@}
  - name: registry.example.gov.cn/paddle-mm/model
    newName: ${model_image%@*}
    digest: ${model_image#*@}
patches:
  - target: {kind: Deployment, name: paddle-mm}
    patch: |-
      - op: replace
        path: /metadata/annotations/paddle-mm~1package-sequence
        value: "$sequence"
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: "-o"
      - op: add
        path: /spec/template/spec/containers/0/args/-
        value: "Model.name=$model"
YAML
kubectl kustomize --load-restrictor LoadRestrictionsNone "$work/k8s/rollout" > "$work/rendered.yaml"
if [ -x "$root/.venv/bin/kubernetes-validate" ]; then
  "$root/.venv/bin/kubernetes-validate" --strict --quiet "$work/rendered.yaml"
fi
if [ "$dry_run" = 1 ]; then
  keep=$(mktemp -d)
  cp "$work/rendered.yaml" "$keep/"
  echo "dry run: rendered and validated $keep/rendered.yaml (nothing built or applied)"
  exit 0
fi

# 5. apply and wait for the rolling update (readiness = the new package verified and loaded in each pod)
kubectl apply -f "$work/rendered.yaml"
kubectl -n paddle-mm rollout status deployment/paddle-mm --timeout=10m
echo "rolled out $model $version (sequence $sequence) with $model_image"
