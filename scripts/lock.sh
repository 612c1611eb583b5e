#!/usr/bin/env bash
# Refresh requirements.lock: exact versions of every dependency in pyproject.toml (with the dev and gemma3 extras), from
# one resolve by pip-tools, with torch held at 2.13.0 (the CPU build that pip finds on local disk).
# Pins already in the lock are kept where they still fit; pass --upgrade to move every pin to the newest
# allowed version, or --upgrade-package NAME for one. Review the diff, run the tests, commit the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$(mktemp -d)"
trap 'rm -rf "$TOOLS"' EXIT
python3 -m venv "$TOOLS/venv"
"$TOOLS/venv/bin/python" -m pip install --quiet --disable-pip-version-check "pip-tools==7.6.2"
echo "torch==2.13.0" > "$TOOLS/torch.txt"
# pip-compile resolves as pip would (same indexes and local wheels) but installs nothing.
CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh" "$TOOLS/venv/bin/pip-compile" --quiet --extra dev --extra gemma3 --strip-extras \
  --allow-unsafe --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
  --constraint "$TOOLS/torch.txt" --output-file requirements.lock "$@" pyproject.toml
sed -i "s#-c $TOOLS/torch.txt#-c torch==2.13.0 (scripts/lock.sh)#" requirements.lock
