#!/usr/bin/env bash
# Run the service container hardened: read-only root, no capabilities, no privilege escalation, non-root,
# writable tmpfs only where the service writes, the config/keys/package mounted read-only.
#   ENGINE=docker|isula  TAG=paddle-mm:<version>  CONFIG_DIR=/etc/paddle_mm  MODEL_DIR=/opt/models/current \
#   AUDIT_DIR=/var/log/paddle_mm  PORT=8080  deploy/run.sh
# CONFIG_DIR holds serve.yml (Model.package: /models/package), tokens and the signers' public keys.
set -euo pipefail

ENGINE=${ENGINE:-docker}
TAG=${TAG:-paddle-mm:dev}
CONFIG_DIR=${CONFIG_DIR:-/etc/paddle_mm}
MODEL_DIR=${MODEL_DIR:-/opt/models/current}
AUDIT_DIR=${AUDIT_DIR:-/var/log/paddle_mm}
PORT=${PORT:-8080}

case "$ENGINE" in
  docker|isula) ;;
  *) echo "ENGINE=$ENGINE: use docker or isula" >&2; exit 2 ;;
esac
for dir in "$CONFIG_DIR" "$MODEL_DIR" "$AUDIT_DIR"; do
  [ -d "$dir" ] || { echo "$dir does not exist; create it (see docs/deploy.md)" >&2; exit 2; }
done

# isula run takes the same flags as docker run for all of these
exec "$ENGINE" run --rm --name paddle-mm \
  --read-only --cap-drop ALL --security-opt no-new-privileges --user 10001:10001 \
  --tmpfs /tmp:rw,noexec,nosuid,size=64m --tmpfs /var/lib/paddle_mm:rw,noexec,nosuid,size=1m \
  --pids-limit 256 --memory 2g \
  -v "$CONFIG_DIR:/etc/paddle_mm:ro" -v "$MODEL_DIR:/models:ro" -v "$AUDIT_DIR:/var/log/paddle_mm:rw" \
  -p "127.0.0.1:$PORT:8080" \
  "$TAG" -c /etc/paddle_mm/serve.yml -o Server.host=0.0.0.0 Server.port=8080
