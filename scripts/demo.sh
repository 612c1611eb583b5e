#!/usr/bin/env bash
# Set up (or refresh) .venv and run the demo pipeline on the embedded defaults (no network).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/lamar demo "$@"
