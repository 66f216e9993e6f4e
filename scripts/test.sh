#!/usr/bin/env bash
# Set up what is missing, then run the test suite (CI: .ci/run calls this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests
exec .venv/bin/python -m pytest -q tests "$@"
