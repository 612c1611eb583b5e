"""Test-wide settings: everything runs offline, and nothing here imports datasets or transformers
(the local-Hub tests set HF_ENDPOINT in fresh subprocesses before those libraries read it)."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real benchmark files in ../shared/data; tests that need them skip when absent."""
    if not (SHARED_DATA / "amazon_beauty").is_dir():
        pytest.skip(f"real benchmark data not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA
