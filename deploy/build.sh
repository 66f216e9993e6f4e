#!/usr/bin/env bash
# Build the service image with docker or iSula (isula-build), on a Debian or an openEuler base.
#   ENGINE=docker|isula  BASE=debian|openeuler  BASE_IMAGE=<name>@sha256:<digest>  TAG=paddle-mm:<version>
#   IMAGE=serve|train  deploy/build.sh        (train: the PaddleJob's image, Debian base, the whole lock)
# The base must be pinned by digest (等保: images pinned by digest); the build context is the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE=${ENGINE:-docker}
BASE=${BASE:-debian}
TAG=${TAG:-paddle-mm:dev}
IMAGE=${IMAGE:-serve}
BASE_IMAGE=${BASE_IMAGE:-}

case "$IMAGE:$BASE" in
  train:debian) dockerfile=deploy/docker/Dockerfile.train ;;
  train:*) echo "IMAGE=train is built on BASE=debian only" >&2; exit 2 ;;
  serve:debian) dockerfile=deploy/docker/Dockerfile.debian ;;
  serve:openeuler) dockerfile=deploy/docker/Dockerfile.openeuler ;;
  *) echo "IMAGE=$IMAGE BASE=$BASE: use IMAGE=serve|train and BASE=debian|openeuler" >&2; exit 2 ;;
esac
if [[ "$BASE_IMAGE" != *@sha256:* ]]; then
  echo "BASE_IMAGE='$BASE_IMAGE' is not pinned by digest; pass e.g. python:3.11-slim-bookworm@sha256:<64 hex>" \
       "(docker buildx imagetools inspect <tag> prints it)" >&2
  exit 2
fi

case "$ENGINE" in
  docker)
    docker build -f "$dockerfile" --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$TAG" . ;;
  isula)
    # iSula has no build verb: isula-build builds OCI images and can hand them to isulad
    isula-build ctr-img build -f "$dockerfile" --build-arg "BASE_IMAGE=$BASE_IMAGE" -o "isulad:$TAG" . ;;
  *)
    echo "ENGINE=$ENGINE: use docker or isula" >&2; exit 2 ;;
esac
echo "built $TAG from $BASE_IMAGE with $ENGINE"
