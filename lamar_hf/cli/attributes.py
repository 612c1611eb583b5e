"""``lamar attributes``: cluster each signal kind's phrases into attribute ids (``<kind>_cluster`` columns)."""

from __future__ import annotations

import os

# On shared CPUs, spinning OpenMP threads slow every process down; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path

from . import UserError, add_command


def add_parser(subparsers) -> None:
    from ..enrich.attributes import DEFAULT_CLUSTERS, DEFAULT_SEED

    sub = add_command(
        subparsers, "attributes",
        "cluster the scenario / intent / topic phrases into attribute ids 1..k (0: no usable signal)",
        "lamar attributes --signals outputs/beauty --clusters 64 --out outputs/beauty/signals-attributes.parquet\n"
        "  lamar attributes --signals new-items.parquet --out new-items-attributes.parquet \\\n"
        "      --centres outputs/beauty/signals-attributes.attributes.safetensors",
        run)
    sub.add_argument("--signals", required=True, type=Path,
                     help="a signals parquet file, or a folder with signals/*.parquet (lamar enrich --out)")
    sub.add_argument("--out", required=True, type=Path,
                     help="the parquet file to write (with OUT's name .attributes.json and .attributes.safetensors, "
                          "the cluster centres, beside it)")
    sub.add_argument("--centres", type=Path, default=None,
                     help="a .attributes.safetensors file of an earlier run: give each phrase the id of its nearest "
                          "centre there instead of clustering anew (the ids a model trained on that run reads); "
                          "--clusters, --seed and --max-iterations do not apply")
    sub.add_argument("--clusters", type=int, default=DEFAULT_CLUSTERS,
                     help=f"attribute ids per signal kind (default {DEFAULT_CLUSTERS}); capped, with a warning, at "
                          "the number of distinct phrases of a kind")
    sub.add_argument("--kinds", default=None,
                     help="comma-separated signal columns to cluster (default: those of scenario,intent,topic present)")
    sub.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"k-means seed (default {DEFAULT_SEED})")
    sub.add_argument("--max-iterations", type=int, default=100, help="Lloyd iterations at most (default 100)")
    sub.add_argument("--encoder", default=None,
                     help="sentence encoder folder or id (default: the packaged all-MiniLM-L6-v2)")
    sub.add_argument("--embedding-cache", type=Path, default=None,
                     help="per-phrase embedding cache file (default: $LAMAR_CACHE/text_embeddings/signal_phrases"
                          ".safetensors)")
    sub.add_argument("--no-embedding-cache", action="store_true", help="embed every phrase, cache nothing")
    sub.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def signals_file(path: Path) -> Path:
    """The one parquet file that ``--signals`` names (a file, or a folder holding ``signals/*.parquet``)."""
    if path.is_file():
        return path
    files = sorted((path / "signals").glob("*.parquet")) if path.is_dir() else []
    if len(files) != 1:
        found = "no" if not files else f"{len(files)}"
        raise UserError(f"--signals {path}: {found} signals parquet files (expected a .parquet file or "
                        f"{path}/signals/<one file>.parquet)")
    return files[0]


def run(args) -> int:
    import pyarrow.parquet as pq
    from datasets import Dataset

    from ..enrich.attributes import assign_attributes, attributes_centres_file, signal_attributes, write_attributes
    from ..text_embeddings import default_text_embeddings_cache

    source = signals_file(args.signals)
    if args.centres is not None and attributes_centres_file(args.out).resolve() == args.centres.resolve():
        # Assigned ids publish no centres, so writing them there would delete the centres they were read from.
        raise UserError(f"--out {args.out} would replace the centres file --centres {args.centres} reads from; "
                        "write the assigned ids elsewhere")
    if args.clusters < 1:
        raise UserError(f"--clusters {args.clusters}: give at least 1")
    # Before embedding anything: a run that would end by refusing to write should not start.
    if args.out.exists() and not args.overwrite:
        raise UserError(f"--out {args.out} exists; pass --overwrite to replace it, or write elsewhere")
    try:
        table = Dataset(pq.read_table(source))
    except Exception as error:  # noqa: BLE001 - pyarrow raises several types for an unreadable file
        raise UserError(f"--signals {source}: not a readable parquet file ({error})") from None
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()] if args.kinds else None
    cache = None if args.no_embedding_cache else (
        args.embedding_cache or default_text_embeddings_cache("signal_phrases"))
    if args.centres is not None:
        result, provenance = assign_attributes(table, args.centres, kinds=kinds, encoder=args.encoder,
                                               cache_path=cache, where=str(source))
        centres, verb = None, "assigned to the nearest of"
    else:
        result, provenance, centres = signal_attributes(
            table, kinds=kinds, clusters=args.clusters, seed=args.seed, encoder=args.encoder, cache_path=cache,
            max_iterations=args.max_iterations, where=str(source))
        verb = "clustered into"
    provenance["source"] = str(source)
    path = write_attributes(result, provenance, args.out, overwrite=args.overwrite, centres=centres)
    for kind, figures in provenance["kinds"].items():
        print(f"lamar attributes: {figures['column']}: {figures['distinct_phrases']:,} distinct phrases {verb} "
              f"{figures.get('clusters_used', figures['clusters'])} clusters, {figures['usable_rows']:,} rows "
              f"({figures['unusable_rows']:,} without a usable signal get 0)")
    print(f"lamar attributes: wrote {path} ({len(result):,} rows)")
    return 0
