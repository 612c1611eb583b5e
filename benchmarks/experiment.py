"""One experiment runner for every benchmark: settings chosen on validation, test figures reported only for them.

A grid file under ``benchmarks/configs/`` (YAML or JSON) declares the backbones, variants, seeds, the base
settings and the settings to try (each a few overrides of the base). For every backbone x variant the runner
trains every setting over every seed with the same code as ``training/train.py``
(:func:`lamar_hf.training.train_recommender`), picks the setting with the best mean validation NDCG@10 over the
seeds, and only then reads that setting's test figures. Each run is kept as a run record (its device, library
versions, seed, setting and the split fingerprint of the data); every table cell comes from those records.

Step 1, on CPU (needs ``datasets`` and the packaged MiniLM for the text variants; a few minutes): the sequences (with
user ids), the item-text embeddings, the signal attribute ids (when the signals file has ``<kind>_cluster`` columns,
``lamar attributes``) and the user-signal embeddings (``--user_signals_file``, ``lamar enrich_users``), shared by every
run of every seed::

    python benchmarks/experiment.py prepare --dataset outputs/beauty \\
        --signals_file outputs/beauty-signals/signals-attributes.parquet \\
        --user_signals_file outputs/beauty-users/user_signals/train-00000-of-00001.parquet

Step 2 (torch + transformers + accelerate + safetensors + pyyaml; matplotlib for the chart): every run of the
grid, in parallel processes; finished runs are reused and a run cut short continues from its checkpoint, so the
command can be repeated until the grid is done::

    python benchmarks/experiment.py run --config benchmarks/configs/beauty_sasrec.yaml --jobs 2

A reduced grid (some settings, seeds or variants; written as ``<name>_reduced`` unless ``--name`` is given), and a
smoke run on a few users with every setting cut to two epochs::

    python benchmarks/experiment.py run --config benchmarks/configs/beauty_sasrec.yaml \\
        --settings "reference,full softmax" --seeds 0 --variants id-only
    python benchmarks/experiment.py run --config benchmarks/configs/beauty_sasrec.yaml --variants id-only \\
        --seeds 0 --max_users 300 --override num_train_epochs=2

Each run record goes to ``benchmarks/results/<dataset>/runs/<results name>/`` unless ``--work`` says otherwise: the
records are committed (git ignores the logs and checkpoints beside them), so that every table can be collected again
from them on another machine.

Step 3: the table from run records, wherever they were trained (one device and one split per table)::

    python benchmarks/experiment.py collect --config benchmarks/configs/beauty_sasrec.yaml \\
        --runs benchmarks/results/amazon_beauty/runs/beauty_sasrec

Writes ``benchmarks/results/<dataset>/<experiment>.{json,md,png}``.

Variants (what a model reads besides the item ids; see :data:`VARIANTS`): ``id-only``; item texts fused by the
setting's ``fusion`` (default ``add``): ``metadata``, ``signals`` (scenario, intent, topic), ``signals+metadata``, and
one signal kind alone, ``scenario``, ``intent``, ``topic``; ``attributes``, the three kinds' attribute ids learned as
item attributes, and ``metadata+attributes``, those ids beside the fused metadata text; ``user-signals``, one user
token of the user's training-history signal. The fusion operators are settings (``fusion: gate``). How a setting
applies to a variant:

- a variant without item texts (``id-only``, ``attributes``, ``user-signals``) ignores ``fusion`` and
  ``semantic_dims``: its runs leave them out of their setting, so a setting that differs from an earlier one only by
  them is the same run and is not trained twice (the table lists it as not applicable);
- ``fusion: multiview`` weighs two or more item texts: it does not apply to a variant with one (listed likewise);
- ``fusion: none`` contradicts a variant with item texts: the grid is refused before any run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results"
EXPERIMENTS = REPO / "outputs" / "experiments"
SEQUENCES_FILE = "sequences.safetensors"
TEXTS_FILE = "text_embeddings.safetensors"
ATTRIBUTES_FILE = "attributes.safetensors"
USER_EMBEDDINGS_FILE = "user_embeddings.safetensors"
RUN_FORMAT = "lamar-experiment-run/1"
SIGNALS = ("scenario", "intent", "topic")


@dataclass(frozen=True)
class Variant:
    """What a variant's model reads besides the item ids: item texts it fuses (signal kinds, the metadata text),
    signal kinds whose attribute ids it learns, and whether it reads a user token."""

    signals: tuple[str, ...] = ()
    use_metadata: bool = False
    attributes: tuple[str, ...] = ()
    user_signals: bool = False

    @property
    def item_texts(self) -> int:
        """How many item texts the model fuses."""
        return len(self.signals) + int(self.use_metadata)


VARIANTS = {
    "id-only": Variant(),
    "metadata": Variant(use_metadata=True),
    "signals": Variant(SIGNALS),
    "signals+metadata": Variant(SIGNALS, True),
    "attributes": Variant(attributes=SIGNALS),
    # Whether the signals add to the metadata text what it lacks, as learned attribute ids rather than more text.
    "metadata+attributes": Variant(use_metadata=True, attributes=SIGNALS),
    "user-signals": Variant(user_signals=True),
    **{kind: Variant((kind,)) for kind in SIGNALS},
}
# Setting keys that only act on fused item texts: a variant without texts leaves them out of its runs.
TEXT_FUSION_KEYS = ("fusion", "semantic_dims")
SELECTION_METRIC = "ndcg@10"
REPORTED = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10")
# What makes two runs the same run: a record is reused only when all of these match.
IDENTITY = (
    "backbone", "variant", "setting", "seed", "split_fingerprint", "max_users", "texts", "time_budget", "device",
)
# Identity of the inputs only some variants read (attribute ids, user embeddings): part of a run's identity only where
# set, so that the identity, and the record file name, of every other run stays what it was before they existed.
OPTIONAL_IDENTITY = ("attributes", "user_signals")
# Arguments the runner sets itself (per run, or fixed by the protocol); a grid may not set them.
RUNNER_OWNED = {
    "backbone", "signals", "use_metadata", "signal_attributes", "text_encoder", "output_dir", "seed", "data_seed", "use_cpu", "disable_tqdm",
    "logging_strategy", "report_to", "push_to_hub", "hub_model_id", "resume_from_checkpoint", "eval_strategy",
    "save_strategy", "load_best_model_at_end", "metric_for_best_model", "greater_is_better", "save_only_model",
}


# ---------------------------------------------------------------------------------------------------- the grid

@dataclass
class Grid:
    """A declared grid: which runs an experiment trains, and which settings it chooses among on validation."""

    name: str
    path: str
    dataset: str | None
    backbones: list[str]
    variants: list[str]
    seeds: list[int]
    base: dict
    settings: dict[str, dict]  # setting name -> its overrides of ``base``

    def resolved(self, name: str) -> dict:
        """The complete setting ``name``: the base with its overrides."""
        return {**self.base, **self.settings[name]}

    def describe(self) -> dict:
        return {"file": self.path, "name": self.name, "dataset": self.dataset, "backbones": self.backbones,
                "variants": self.variants, "seeds": self.seeds, "base": self.base, "settings": self.settings,
                "selected_on": "validation", "selection_metric": SELECTION_METRIC}


def load_grid(path) -> Grid:
    """Read and check a grid file.

    Raises:
        SystemExit: naming the file and the field, for an unreadable file, a missing or unknown field, an unknown
            variant or backbone, a setting the runner owns, or a setting that does not apply to a backbone.
    """
    import yaml

    from lamar_hf.training import ModelArguments, RecommenderTrainingArguments, get_backbone

    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"grid file {path} not found")
    try:
        spec = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (ValueError, yaml.YAMLError) as error:
        raise SystemExit(f"grid file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}")
    if not isinstance(spec, dict):
        raise SystemExit(f"grid file {path}: expected a mapping at the top level")
    known = {"dataset", "backbones", "variants", "seeds", "base", "settings"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise SystemExit(f"grid file {path}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(known))})")
    for required in ("backbones", "seeds", "settings"):
        if not spec.get(required):
            raise SystemExit(f"grid file {path}: field {required!r} is missing or empty")
    variants = list(spec.get("variants") or ["id-only"])
    for variant in variants:
        if variant not in VARIANTS:
            raise SystemExit(f"grid file {path}: unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    base = dict(spec.get("base") or {})
    settings = {}
    for index, entry in enumerate(spec["settings"]):
        if not isinstance(entry, dict):
            raise SystemExit(f"grid file {path}: settings[{index}] must be a mapping of overrides")
        entry = dict(entry)
        name = str(entry.pop("name", None) or setting_name(entry))
        if name in settings:
            raise SystemExit(f"grid file {path}: two settings are named {name!r}")
        settings[name] = entry
    grid = Grid(name=path.stem, path=str(path), dataset=spec.get("dataset"), backbones=list(spec["backbones"]),
                variants=variants, seeds=[int(seed) for seed in spec["seeds"]], base=base, settings=settings)
    check_setting_names(grid)
    return grid


def check_setting_names(grid: Grid, overridden: dict | None = None) -> None:
    """Every key of the base, the settings (and ``overridden``) must be a model or training argument that the
    runner leaves to grids, and a model argument must apply to every backbone of the grid.

    Raises:
        SystemExit: naming the grid file, where the key is set and the key.
    """
    from lamar_hf.training import ModelArguments, RecommenderTrainingArguments, get_backbone

    model_fields = {f.name for f in fields(ModelArguments)}
    training_fields = {f.name for f in fields(RecommenderTrainingArguments)}
    places = [("base", grid.base)] + [(f"setting {name!r}", overrides) for name, overrides in grid.settings.items()]
    places += [("--override", overridden)] if overridden else []
    for backbone in grid.backbones:
        try:
            taken = set(get_backbone(backbone).hyperparameters) | {"fusion"}
        except ValueError as error:
            raise SystemExit(f"grid file {grid.path}: {error}")
        for where, keys in places:
            for key in keys:
                if key in RUNNER_OWNED:
                    raise SystemExit(f"grid file {grid.path}, {where}: {key!r} is set by the runner, not by a grid")
                if key not in model_fields | training_fields:
                    raise SystemExit(f"grid file {grid.path}, {where}: {key!r} is neither a model nor a training "
                                     "argument")
                if key in model_fields and key not in taken:
                    raise SystemExit(f"grid file {grid.path}, {where}: {key!r} does not apply to the {backbone} "
                                     "backbone")


def setting_name(overrides: dict) -> str:
    """A setting's name from its overrides, e.g. ``num_hidden_layers=2``; ``reference`` for the base itself."""
    return ", ".join(f"{key}={value}" for key, value in overrides.items()) or "reference"


def reduce_grid(grid: Grid, settings=None, seeds=None, variants=None, overrides=()) -> Grid:
    """The grid restricted to some of its settings, seeds or variants (each a comma-separated list, or None: all),
    with ``overrides`` (``KEY=VALUE`` strings, the value read as YAML) set in every setting, e.g. a smoke run's
    ``num_train_epochs=2``.

    Raises:
        SystemExit: for a setting, seed or variant the grid does not declare, or an override that is not ``KEY=VALUE``
            or not a setting a grid may hold.
    """
    import yaml

    overridden = {}
    for text in overrides:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--override expects KEY=VALUE, got {text!r}")
        overridden[key.strip()] = yaml.safe_load(value)
    check_setting_names(grid, overridden)

    def pick(wanted, declared, what):
        if wanted is None:
            return list(declared)
        chosen = [type(next(iter(declared)))(value.strip()) for value in wanted.split(",") if value.strip()]
        for value in chosen:
            if value not in declared:
                raise SystemExit(f"--{what} {value!r} is not in {grid.path} "
                                 f"(declared: {', '.join(map(str, declared))})")
        return chosen

    names = pick(settings, list(grid.settings), "settings")
    return Grid(grid.name, grid.path, grid.dataset, grid.backbones, pick(variants, grid.variants, "variants"),
                pick(seeds, grid.seeds, "seeds"), grid.base,
                {name: {**grid.settings[name], **overridden} for name in names})


def variant_setting(grid: Grid, name: str, variant: str) -> dict:
    """The setting ``name`` as the runs of ``variant`` use it: :meth:`Grid.resolved`, without the fusion keys
    (:data:`TEXT_FUSION_KEYS`) for a variant that fuses no item texts."""
    setting = grid.resolved(name)
    if not VARIANTS[variant].item_texts:
        setting = {key: value for key, value in setting.items() if key not in TEXT_FUSION_KEYS}
    return setting


def not_applicable(grid: Grid, name: str, variant: str) -> str | None:
    """Why the setting ``name`` has no runs of its own for ``variant`` (None: it has): ``fusion: multiview`` with one
    item text, or the same run as an earlier setting once the fusion keys a variant without texts ignores are gone."""
    setting = variant_setting(grid, name, variant)
    if VARIANTS[variant].item_texts == 1 and setting.get("fusion") == "multiview":
        return "fusion multiview weighs two or more item texts; this variant fuses one"
    for earlier in grid.settings:
        if earlier == name:
            return None
        if variant_setting(grid, earlier, variant) == setting:
            return f"the same run as setting {earlier!r} (this variant fuses no item texts: the fusion does not apply)"
    return None


def applicable_runs(grid: Grid) -> list[tuple[str, str, str]]:
    """``(backbone, variant, setting name)`` of every part of the grid that has runs of its own."""
    return [(backbone, variant, name)
            for backbone, variant, name in itertools.product(grid.backbones, grid.variants, grid.settings)
            if not_applicable(grid, name, variant) is None]


def not_applicable_parts(grid: Grid) -> list[dict]:
    """The variant x setting pairs of the grid without runs of their own, and why (for the results file)."""
    return [{"variant": variant, "setting": name, "reason": reason}
            for variant, name in itertools.product(grid.variants, grid.settings)
            if (reason := not_applicable(grid, name, variant)) is not None]


def split_setting(setting: dict) -> tuple[dict, dict]:
    """(model arguments, training arguments) of a complete setting."""
    from lamar_hf.training import ModelArguments

    model_fields = {f.name for f in fields(ModelArguments)}
    return ({k: v for k, v in setting.items() if k in model_fields},
            {k: v for k, v in setting.items() if k not in model_fields})


# ---------------------------------------------------------------------------------------------------- provenance

def device_name(kind: str) -> str:
    """What a run trained on, as tables compare it: the GPU's name, or the CPU's model name."""
    import torch

    if kind == "cuda":
        return torch.cuda.get_device_name(0)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def library_versions() -> dict:
    import importlib.metadata

    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "lamar-hf": importlib.metadata.version("lamar-hf"), "python": platform.python_version()}


def git_commit() -> str | None:
    """The checkout's commit, ``+modified`` when tracked files differ from it (None outside a git checkout)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        changed = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=30)
        if head.returncode == 0:
            return head.stdout.strip() + ("+modified" if changed.stdout.strip() else "")
    return None


def split_fingerprint(data, dataset_folder: Path | None = None) -> str:
    """The split fingerprint that ``lamar prepare`` recorded: ``RecommendationData.source["split_fingerprint"]``,
    else the prepared folder's ``lamar_prepare.json``.

    Raises:
        SystemExit: when neither holds one (nothing is computed here, so that every table quotes the same one).
    """
    fingerprint = (data.source or {}).get("split_fingerprint")
    manifest = Path(dataset_folder) / "lamar_prepare.json" if dataset_folder else None
    if not fingerprint and manifest and manifest.is_file():
        recorded = json.loads(manifest.read_text())
        fingerprint = recorded.get("split_fingerprint") or (recorded.get("source") or {}).get("split_fingerprint")
    if not fingerprint:
        where = f"{manifest}" if manifest else "the sequences file"
        raise SystemExit(f"{where} records no split_fingerprint: prepare the dataset again with a `lamar prepare` "
                         "that writes it, so that runs can say which split they measured")
    return fingerprint


def file_fingerprint(path: Path) -> str:
    from lamar_hf.report import file_digest

    return f"sha256:{file_digest(path)}"


# ---------------------------------------------------------------------------------------------------- prepare

def prepare(options) -> None:
    """Write the sequences (with the split fingerprint and user ids) and the MiniLM embeddings of the metadata text
    and of every signal (if given), the signal attribute ids (if the signals have ``<kind>_cluster`` columns) and the
    user-signal embeddings (if ``--user_signals_file``), shared by every run of an experiment."""
    from lamar_hf.data import load_prepared, read_p5
    from lamar_hf.text_embeddings import (
        DEFAULT_ENCODER,
        cached_item_text_embeddings,
        default_text_embeddings_cache,
        read_signals,
        save_text_embeddings,
    )
    from lamar_hf.training import RecommendationData

    dataset = Path(options.dataset)
    prepared = (dataset / "items").is_dir()
    benchmark = load_prepared(dataset) if prepared else read_p5(dataset)
    data = RecommendationData.from_benchmark(benchmark)
    data.source["split_fingerprint"] = split_fingerprint(data, dataset if prepared else None)
    out = Path(options.out or EXPERIMENTS / benchmark.name / "inputs")
    data.save(out / SEQUENCES_FILE)
    signals = read_signals(options.signals_file) if options.signals_file else benchmark.signals
    kinds = ["metadata"] + (list(SIGNALS) if signals is not None else [])
    # The shared cache (also used by training/train.py) re-embeds only texts that changed, e.g. new signals.
    cache = default_text_embeddings_cache(benchmark.name)
    embeddings = cached_item_text_embeddings(benchmark.items, kinds, cache, signals)
    save_text_embeddings(out / TEXTS_FILE, embeddings, {
        "encoder": DEFAULT_ENCODER, "dataset": str(dataset), "signals_file": options.signals_file or "",
        "kinds": kinds,
    })
    covered = {kind: int((abs(matrix).sum(axis=1) > 0).sum()) for kind, matrix in embeddings.items()}
    print(f"wrote {out / SEQUENCES_FILE} (split {data.source['split_fingerprint']}) and {out / TEXTS_FILE}; items with "
          f"a text per kind: {covered}" + ("" if signals is not None else " (no signals: pass --signals_file)"))
    source = options.signals_file or "the dataset's signals config"
    if signals is not None:
        prepare_attributes(signals, data.num_items, source, out)
    if options.user_signals_file:
        prepare_user_embeddings(options.user_signals_file, options.user_signal, data, cache, out)


def prepare_attributes(signals, num_items: int, source: str, out: Path) -> None:
    """Write the attribute ids of every signal kind whose ``<kind>_cluster`` column the signals have (``lamar
    attributes``); none: say so (the ``attributes`` variant then has no inputs)."""
    import torch
    from safetensors.torch import save_file

    from lamar_hf.training.data import ATTRIBUTE_COLUMN, item_attribute_ids

    rows = signals.to_list() if hasattr(signals, "to_list") else list(signals)
    kinds = [kind for kind in SIGNALS if rows and ATTRIBUTE_COLUMN.format(kind=kind) in rows[0]]
    if not kinds:
        print(f"no attribute ids: {source} has no {', '.join(ATTRIBUTE_COLUMN.format(kind=k) for k in SIGNALS)} "
              "column (write them with `lamar attributes`)")
        return
    try:
        attributes = item_attribute_ids(rows, kinds, num_items, source)
    except ValueError as error:
        raise SystemExit(str(error))
    covered = {kind: int((ids[1:] > 0).sum()) for kind, ids in attributes.items()}
    save_file({kind: ids.to(torch.int64).contiguous() for kind, ids in attributes.items()}, str(out / ATTRIBUTES_FILE),
              metadata={"lamar": json.dumps({"signals_file": source, "kinds": kinds, "items_with_id": covered,
                                             "largest_id": {k: int(ids.max()) for k, ids in attributes.items()}})})
    print(f"wrote {out / ATTRIBUTES_FILE}; items with an attribute id per kind: {covered}")


def prepare_user_embeddings(path: str, column: str, data, cache: Path, out: Path) -> None:
    """Write the MiniLM embedding of every user's ``column`` of the user signals table (zeros where unusable).

    Raises:
        SystemExit: naming the file, for a missing column, a user with two rows, or a signal written from items
            outside its user's training sequence.
    """
    from lamar_hf.text_embeddings import DEFAULT_ENCODER, cached_text_embeddings, read_user_signals
    from lamar_hf.training.data import UserTextEmbeddings
    from lamar_hf.training.run import training_history_leaks

    try:
        texts = read_user_signals(path, column)
        leak = training_history_leaks(Path(path), data)
    except (OSError, ValueError) as error:
        raise SystemExit(str(error))
    if leak:
        raise SystemExit(f"{path}: {leak}; user signals must be written from the training history only")
    users = list(dict.fromkeys(user for split in ("train", "validation", "test") for user in data.users_of(split)))
    embeddings = UserTextEmbeddings(users, cached_text_embeddings([texts.get(user, "") for user in users], cache))
    covered, total = embeddings.coverage(data.users_of("train"))
    embeddings.source = {"user_signals_file": str(path), "column": column, "encoder": DEFAULT_ENCODER,
                         "training_users": total, "training_users_with_signal": covered}
    embeddings.save(out / USER_EMBEDDINGS_FILE)
    print(f"wrote {out / USER_EMBEDDINGS_FILE}; {covered} of {total} training users ({covered / max(total, 1):.1%}) "
          f"have a usable {column}")


# ---------------------------------------------------------------------------------------------------- run records

def make_job(grid: Grid, backbone: str, variant: str, name: str, seed: int, *, split_fingerprint: str, device: str,
             dataset: str, max_users: int | None = None, texts: str | None = None, time_budget: float | None = None,
             attributes: str | None = None, user_signals: str | None = None, **execution) -> dict:
    """One run of ``grid``: what identifies it (:data:`IDENTITY`, and :data:`OPTIONAL_IDENTITY` for a variant that
    reads attribute ids or user embeddings), its setting's name and dataset, and ``execution`` details (inputs, work
    folder, threads, ...) that do not change its figures. ``texts``, ``attributes`` and ``user_signals`` are the
    fingerprints of those input files; each is kept only for a variant that reads it."""
    reads = VARIANTS[variant]
    return {"backbone": backbone, "variant": variant, "setting": variant_setting(grid, name, variant), "seed": seed,
            "split_fingerprint": split_fingerprint, "max_users": max_users,
            "texts": texts if reads.item_texts else None, "time_budget": time_budget, "device": device,
            "attributes": attributes if reads.attributes else None,
            "user_signals": user_signals if reads.user_signals else None,
            "setting_name": name, "dataset": dataset, **execution}


def identity_of(job: dict) -> dict:
    """What makes two runs the same run: the :data:`IDENTITY` keys, and those of :data:`OPTIONAL_IDENTITY` that are
    set (a record written before they existed has none, and keeps its identity)."""
    identity = {key: job[key] for key in IDENTITY}
    identity.update({key: job[key] for key in OPTIONAL_IDENTITY if job.get(key) is not None})
    return identity


def record_path(work: Path, identity: dict) -> Path:
    """Where the record of the run ``identity`` lives: its names, then a digest of everything that identifies it."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return Path(work) / f"{identity['backbone']}-{identity['variant']}-seed{identity['seed']}-{digest}.json"


def write_record(work: Path, job: dict, result: dict, provenance: dict) -> Path:
    """Write one run record (atomically: a reader never sees half a record) and return its path."""
    identity = identity_of(job)
    record = {"format": RUN_FORMAT, **identity, "setting_name": job["setting_name"], "dataset": job["dataset"],
              "provenance": provenance, "result": result}
    path = record_path(work, identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(record, indent=1) + "\n")
    partial.replace(path)
    return path


def read_records(folders) -> list[dict]:
    """Every run record in ``folders`` (each with its ``path``).

    Raises:
        SystemExit: for a folder that does not exist, or a JSON file there that is not a run record of this runner.
    """
    records = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise SystemExit(f"--runs {folder} is not a folder")
        for path in sorted(folder.glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except ValueError as error:
                raise SystemExit(f"{path} is not valid JSON: {error}")
            if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
                raise SystemExit(f"{path} is not a run record of benchmarks/experiment.py (no format {RUN_FORMAT!r}); "
                                 "move it out of the runs folder")
            missing = [key for key in (*IDENTITY, "result") if key not in record]
            if missing:
                raise SystemExit(f"run record {path} lacks {', '.join(missing)}")
            records.append({**record, "path": str(path)})
    return records


# ---------------------------------------------------------------------------------------------------- run

def run_one(job: dict) -> dict:
    """Train and test one run in this process; returns its result."""
    import torch

    torch.set_num_threads(job["threads"])
    Path(job["work"]).mkdir(parents=True, exist_ok=True)
    # Each run's Trainer log goes to its own file, so that parallel runs do not interleave on the console.
    with open(record_path(job["work"], identity_of(job)).with_suffix(".log"), "w") as log, \
            contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return train_one(job)


def load_attributes(path: Path, kinds) -> dict:
    """``{kind: [num_items + 1] ids}`` of ``kinds`` from :data:`ATTRIBUTES_FILE`.

    Raises:
        SystemExit: when the file or a kind is missing (run prepare with a signals file that has them).
    """
    from safetensors import safe_open

    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `python benchmarks/experiment.py prepare` with a --signals_file "
                         "that has <kind>_cluster columns (lamar attributes)")
    with safe_open(str(path), framework="pt") as handle:
        missing = [kind for kind in kinds if kind not in handle.keys()]
        if missing:
            raise SystemExit(f"{path} has no attribute ids of {', '.join(missing)} (it has {', '.join(handle.keys())})")
        return {kind: handle.get_tensor(kind) for kind in kinds}


def train_one(job: dict) -> dict:
    from lamar_hf.text_embeddings import load_text_embeddings
    from lamar_hf.training import ModelArguments, RecommendationData, RecommenderTrainingArguments, train_recommender
    from lamar_hf.training.data import UserTextEmbeddings
    from lamar_hf.training.trainer import checkpoint_to_resume

    data = RecommendationData.load(Path(job["inputs"]) / SEQUENCES_FILE)
    if job["max_users"]:
        data = data.first_users(job["max_users"])
    reads = VARIANTS[job["variant"]]
    model_settings, training_settings = split_setting(job["setting"])
    model_args = ModelArguments(backbone=job["backbone"], signals=",".join(reads.signals),
                                use_metadata=reads.use_metadata, signal_attributes=",".join(reads.attributes),
                                **model_settings)
    kinds = model_args.text_kinds()
    texts = load_text_embeddings(Path(job["inputs"]) / TEXTS_FILE, kinds)[0] if kinds else None
    attributes = load_attributes(Path(job["inputs"]) / ATTRIBUTES_FILE, reads.attributes) if reads.attributes else None
    users = UserTextEmbeddings.load(Path(job["inputs"]) / USER_EMBEDDINGS_FILE) if reads.user_signals else None
    output_dir = record_path(job["work"], identity_of(job)).with_suffix("")
    training_args = RecommenderTrainingArguments(
        output_dir=str(output_dir), seed=job["seed"], use_cpu=job["device_kind"] == "cpu", disable_tqdm=True,
        logging_strategy="no",
        # Checkpoints keep the optimizer and RNG states, so that a run cut short (a killed process, the end of a
        # session) continues from its checkpoint, the best epoch so far, when the runner is started again.
        save_only_model=False, resume_from_checkpoint="last", **training_settings,
    )
    resumed_from = checkpoint_to_resume(training_args)
    callbacks = [TrainingTimeBudget(job["time_budget"])] if job["time_budget"] else []
    result = train_recommender(data, model_args, training_args, texts, callbacks=callbacks, item_attributes=attributes,
                               user_embeddings=users)
    shutil.rmtree(output_dir, ignore_errors=True)  # checkpoints are not needed once the test figures are in
    repeat_score = getattr(result.model, "repeat_score", None)
    return {
        "text_kinds": kinds, "validation": result.validation, "test": result.test, "epochs": result.epochs,
        "best_epoch": result.best_epoch, "train_seconds": round(result.train_seconds, 1),
        "resumed_from": Path(resumed_from).name if resumed_from else None,  # train_seconds then counts from there
        "reached_max_epochs": result.epochs >= training_args.num_train_epochs,
        "stopped_by_time_budget": bool(callbacks and callbacks[0].stopped),
        "torch_device": str(result.model.device),
        # For comparison only (the protocol ranks every item): the same model with each user's history removed.
        "test_excluding_history": test_excluding_history(result.model, data, users),
        **({"repeat_score": round(repeat_score.item(), 4)} if repeat_score is not None else {}),
        **({"attribute_kinds": list(reads.attributes),
            "attribute_vocab_sizes": list(result.model.config.attribute_vocab_sizes)} if attributes else {}),
        **({"user_signals": {**users.source, "users_with_signal_in_run": users.coverage(data.users_of("train"))[0],
                             "training_users_in_run": len(data.users_of("train"))}} if users is not None else {}),
        "validation_ndcg@10_by_epoch": [round(entry["eval_ndcg@10"], 5) for entry in result.log_history
                                        if "eval_ndcg@10" in entry and "epoch" in entry],
    }


def test_excluding_history(model, data, users=None) -> dict[str, float]:
    """Test Recall/NDCG/MRR@10/20 when the items of each history are never recommended (as RecBole-style
    evaluators with history filtering do); a model with a user token reads ``users`` (UserTextEmbeddings)."""
    import torch

    from lamar_hf.metrics import ranking_metrics, target_ranks

    extra = {} if users is None else {"user_embeddings": users.for_users(data.users_of("test"))}
    scores = model.score(data.histories["test"], exclude_history=True, **extra)
    targets = torch.tensor(data.targets["test"], device=scores.device)
    return ranking_metrics(target_ranks(scores, targets).cpu().numpy(), (10, 20))


class TrainingTimeBudget(TrainerCallback):
    """Ends training at the first epoch end after ``seconds`` of training (the best model so far is then tested), so
    that every run of a time-limited batch leaves a result; ``stopped`` says whether the budget ended it."""

    def __init__(self, seconds: float):
        self.seconds, self.stopped, self.started = seconds, False, time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        if time.perf_counter() - self.started > self.seconds and not control.should_training_stop:
            control.should_training_stop = self.stopped = True
        return control


def check_settings_build(grid: Grid, data) -> None:
    """Build every backbone's config for every setting before any run starts, so that a wrong value (an unknown
    loss, a negative dropout) stops the batch at once instead of after hours of other runs.

    Raises:
        SystemExit: naming the grid file, backbone and setting.
    """
    from lamar_hf.training import ModelArguments, RecommenderTrainingArguments, build_model, get_backbone

    item_counts = data.item_counts()  # for settings that draw negatives by popularity
    for backbone, name in itertools.product(grid.backbones, grid.settings):
        model_settings, training_settings = split_setting(grid.resolved(name))
        try:
            build_model(ModelArguments(backbone=backbone, **model_settings), data.num_items, item_counts=item_counts)
            RecommenderTrainingArguments(output_dir=str(EXPERIMENTS / "unused"), use_cpu=True, **training_settings)
        except (TypeError, ValueError) as error:
            raise SystemExit(f"grid file {grid.path}, setting {name!r} for {backbone}: {error}")
    # Each variant's texts, attributes and user token with each setting, as configs (no texts are read here).
    for backbone, variant, name in applicable_runs(grid):
        reads = VARIANTS[variant]
        model_settings, _ = split_setting(variant_setting(grid, name, variant))
        try:
            args = ModelArguments(backbone=backbone, signals=",".join(reads.signals), use_metadata=reads.use_metadata,
                                  signal_attributes=",".join(reads.attributes), **model_settings)
            get_backbone(backbone).make_config(args, data.num_items, args.text_kinds(), 384,
                                               {kind: 1 for kind in reads.attributes}, 384 if reads.user_signals else 0)
        except (TypeError, ValueError) as error:
            raise SystemExit(f"grid file {grid.path}, setting {name!r} for {backbone}, variant {variant}: {error}")


def variant_inputs(reduced: Grid, inputs: Path, data) -> dict:
    """The fingerprints of the input files the grid's variants read (``texts``, ``attributes``, ``user_signals``;
    None where no variant reads one).

    Raises:
        SystemExit: naming the file, when one is missing or lacks what a variant reads (run prepare again).
    """
    from safetensors import safe_open

    variants = [VARIANTS[variant] for variant in reduced.variants]
    prepare_hint = "run `python benchmarks/experiment.py prepare` first (or pass --inputs)"
    found = {"texts": None, "attributes": None, "user_signals": None}
    kinds = sorted({kind for variant in variants for kind in variant.signals} |
                   ({"metadata"} if any(variant.use_metadata for variant in variants) else set()))
    if kinds:
        if not (inputs / TEXTS_FILE).is_file():
            raise SystemExit(f"{inputs / TEXTS_FILE} is missing: {prepare_hint}")
        with safe_open(str(inputs / TEXTS_FILE), framework="pt") as handle:
            missing = [kind for kind in kinds if kind not in handle.keys()]
        if missing:
            raise SystemExit(f"{inputs / TEXTS_FILE} has no text embeddings of {', '.join(missing)}: prepare with a "
                             "--signals_file (or leave those variants out with --variants)")
        found["texts"] = file_fingerprint(inputs / TEXTS_FILE)
    attribute_kinds = sorted({kind for variant in variants for kind in variant.attributes})
    if attribute_kinds:
        load_attributes(inputs / ATTRIBUTES_FILE, attribute_kinds)
        found["attributes"] = file_fingerprint(inputs / ATTRIBUTES_FILE)
    if any(variant.user_signals for variant in variants):
        if not (inputs / USER_EMBEDDINGS_FILE).is_file():
            raise SystemExit(f"{inputs / USER_EMBEDDINGS_FILE} is missing: prepare with --user_signals_file (or leave "
                             "the user-signals variant out with --variants)")
        if not data.users:
            raise SystemExit(f"{inputs / SEQUENCES_FILE} carries no user ids (written by an older prepare): run "
                             "`python benchmarks/experiment.py prepare` again")
        found["user_signals"] = file_fingerprint(inputs / USER_EMBEDDINGS_FILE)
    return found


def run(options) -> None:
    grid = load_grid(options.config)
    reduced = reduce_grid(grid, options.settings, options.seeds, options.variants, options.override)
    dataset = options.dataset or grid.dataset
    inputs = Path(options.inputs or (EXPERIMENTS / dataset / "inputs" if dataset else ""))
    if not (inputs / SEQUENCES_FILE).is_file():
        raise SystemExit(f"{inputs / SEQUENCES_FILE} is missing: run `python benchmarks/experiment.py prepare` first "
                         "(or pass --inputs)")
    from lamar_hf.training import RecommendationData

    data = RecommendationData.load(inputs / SEQUENCES_FILE)
    if grid.dataset and data.name != grid.dataset:
        raise SystemExit(f"grid file {grid.path} is for dataset {grid.dataset!r}, but {inputs / SEQUENCES_FILE} holds "
                         f"{data.name!r}")
    fingerprint = split_fingerprint(data)
    check_settings_build(reduced, data)
    read = variant_inputs(reduced, inputs, data)
    if options.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda, but torch sees no GPU")
    device = device_name(options.device)
    threads = options.threads or max(1, (os.cpu_count() or 1) // options.jobs)
    # The records are the evidence of a table: by default they go to the repository, beside the table they make
    # (their logs and checkpoints are ignored by git), so that the table can be collected again on any machine.
    results = results_path(options, grid, reduced, data.name)
    work = Path(options.work or RESULTS / data.name / "runs" / results.stem)
    jobs = [make_job(reduced, backbone, variant, name, seed, split_fingerprint=fingerprint, device=device,
                     dataset=data.name, max_users=options.max_users, time_budget=options.time_budget,
                     device_kind=options.device, inputs=str(inputs), work=str(work), threads=threads, **read)
            for (backbone, variant, name), seed in itertools.product(applicable_runs(reduced), reduced.seeds)]
    skipped = not_applicable_parts(reduced)
    if skipped:
        print(f"{len(skipped)} variant x setting pairs have no runs of their own: "
              + "; ".join(f"{part['variant']} {part['setting']!r} ({part['reason']})" for part in skipped), flush=True)
    pending = [job for job in jobs if options.force or not record_path(work, identity_of(job)).is_file()]
    print(f"{len(jobs) - len(pending)} runs already done, {len(pending)} to run with {options.jobs} processes x "
          f"{threads} threads on {device}", flush=True)
    started = time.perf_counter()
    versions, commit = library_versions(), git_commit()
    command = "python benchmarks/experiment.py " + shlex.join(options.argv)
    failed = []
    with ProcessPoolExecutor(max_workers=options.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_one, job): (job, datetime.now(timezone.utc)) for job in pending}
        for future in as_completed(futures):
            job, submitted = futures[future]
            try:
                result = future.result()
            except Exception as error:  # one failed run must not lose the records of those still running
                log = record_path(work, identity_of(job)).with_suffix(".log")
                failed.append(f"{job['backbone']} {job['variant']} {job['setting_name']!r} seed {job['seed']} ({log})")
                print(f"FAILED {failed[-1]}: {error!r}", flush=True)
                continue
            provenance = {"device_kind": job["device_kind"], "threads": threads, "cpu_count": os.cpu_count(),
                          "versions": versions, "git_commit": commit, "command": command,
                          "submitted_at": submitted.isoformat(timespec="seconds"),
                          "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            path = write_record(work, job, result, provenance)
            # Validation only: test figures are read for the chosen settings, in the table.
            print(f"[{time.perf_counter() - started:7.1f} s] {path.name} ({job['setting_name']}): validation NDCG@10 "
                  f"{result['validation']['ndcg@10']:.4f} after {result['epochs']:g} epochs", flush=True)
    records = read_records([work])
    mine = {record_path(work, identity_of(job)).name for job in jobs}
    done = [record for record in records if Path(record["path"]).name in mine]
    if done:
        write_results(results, reduced, done, command)
    if failed:
        raise SystemExit(f"{len(failed)} runs failed (the table shows them as missing): " + "; ".join(failed))


# ---------------------------------------------------------------------------------------------------- collect

def matching_records(grid: Grid, records: list[dict], device: str | None = None) -> list[dict]:
    """The records that are runs of ``grid`` (and, if given, of ``device``).

    Raises:
        SystemExit: when they mix devices, split fingerprints, user subsets, text embeddings or time budgets (naming
            the runs on each side), or when one run of the grid has two records.
    """
    wanted = {(backbone, variant, json.dumps(variant_setting(grid, name, variant), sort_keys=True), seed)
              for (backbone, variant, name), seed in itertools.product(applicable_runs(grid), grid.seeds)}
    chosen = [record for record in records
              if (record["backbone"], record["variant"], json.dumps(record["setting"], sort_keys=True), record["seed"])
              in wanted and (device is None or record["device"] == device)]
    for key, label in (("device", "devices"), ("split_fingerprint", "split fingerprints"),
                       ("max_users", "user subsets (--max_users)"), ("time_budget", "time budgets")):
        refuse_mixed(chosen, lambda record, key=key: record[key], label)
    refuse_mixed([record for record in chosen if record["texts"]], lambda record: record["texts"], "text embeddings")
    for key, label in (("attributes", "attribute ids"), ("user_signals", "user embeddings")):
        refuse_mixed([record for record in chosen if record.get(key)], lambda record, key=key: record[key], label)
    seen = {}
    for record in chosen:
        key = (record["backbone"], record["variant"], json.dumps(record["setting"], sort_keys=True), record["seed"])
        if key in seen:
            raise SystemExit(f"one run has two records: {seen[key]} and {record['path']}; keep one")
        seen[key] = record["path"]
    return chosen


def refuse_mixed(records: list[dict], value_of, label: str) -> None:
    groups: dict = {}
    for record in records:
        groups.setdefault(json.dumps(value_of(record)), []).append(Path(record["path"]).name)
    if len(groups) > 1:
        sides = "; ".join(f"{json.loads(value)!r}: {', '.join(names)}" for value, names in groups.items())
        raise SystemExit(f"refusing to put runs of different {label} in one table: {sides}")


def mean_and_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def averaged(records: list[dict], part: str) -> dict:
    """``{metric: mean, metric_std: std}`` over the records' ``result[part]``."""
    out = {}
    for metric in REPORTED:
        out[metric], out[f"{metric}_std"] = mean_and_std([record["result"][part][metric] for record in records])
    return out


def select(grid: Grid, records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(rows, settings): per backbone x variant the setting with the best mean validation NDCG@10 over the grid's
    seeds (only settings with every seed are candidates; the first declared wins a tie), with its validation and
    test figures; and per setting what it reached on validation. A backbone x variant without a complete setting
    is a row marked missing."""
    by_key = {(r["backbone"], r["variant"], json.dumps(r["setting"], sort_keys=True), r["seed"]): r for r in records}
    rows, settings = [], []
    for backbone, variant in itertools.product(grid.backbones, grid.variants):
        candidates = []
        applicable = [name for name in grid.settings if not_applicable(grid, name, variant) is None]
        for name in applicable:
            setting = json.dumps(variant_setting(grid, name, variant), sort_keys=True)
            runs = [by_key[(backbone, variant, setting, seed)] for seed in grid.seeds
                    if (backbone, variant, setting, seed) in by_key]
            done = [run["seed"] for run in runs]
            entry = {"backbone": backbone, "variant": variant, "setting": name, "seeds": done,
                     "missing_seeds": [seed for seed in grid.seeds if seed not in done], "chosen": False}
            if runs:
                entry["validation"] = averaged(runs, "validation")
            settings.append(entry)
            if not entry["missing_seeds"]:
                candidates.append((entry, runs))
        row = {"backbone": backbone, "variant": variant, "selected_on": "validation",
               "selection_metric": SELECTION_METRIC, "settings_complete": len(candidates),
               "settings_declared": len(applicable)}
        if not candidates:
            rows.append({**row, "setting": None, "missing": True, "seeds": []})
            continue
        entry, runs = max(candidates, key=lambda pair: pair[0]["validation"][SELECTION_METRIC])
        entry["chosen"] = True
        row.update({
            "setting": {"name": entry["setting"], "overrides": grid.settings[entry["setting"]],
                        "values": variant_setting(grid, entry["setting"], variant)},
            "missing": False, "seeds": entry["seeds"], "validation": entry["validation"],
            "test": averaged(runs, "test"),
            "epochs": [run["result"]["epochs"] for run in runs],
            # wall seconds of each run's training (validation included), with the torch threads it had
            "train_seconds": [run["result"].get("train_seconds") for run in runs],
            "threads": [run.get("provenance", {}).get("threads") for run in runs],
            "reached_max_epochs": [bool(run["result"].get("reached_max_epochs")) for run in runs],
            "stopped_by_time_budget": [bool(run["result"].get("stopped_by_time_budget")) for run in runs],
            "runs": [Path(run["path"]).name for run in runs],
        })
        if all("test_excluding_history" in run["result"] for run in runs):
            row["test_excluding_history"] = averaged(runs, "test_excluding_history")
        if all("repeat_score" in run["result"] for run in runs):
            row["repeat_score"] = statistics.fmean(run["result"]["repeat_score"] for run in runs)
        rows.append(row)
    for row in rows:
        base = next((other for other in rows if other["backbone"] == row["backbone"] and other["variant"] == "id-only"
                     and not other["missing"]), None)
        if not row["missing"] and base and row["variant"] != "id-only" and base["test"]["recall@20"]:
            row["test_recall@20_gain_over_id_only"] = row["test"]["recall@20"] / base["test"]["recall@20"] - 1
    return rows, settings


def write_results(path: Path, grid: Grid, records: list[dict], command: str) -> None:
    """The results JSON (from run records only), then the markdown table and the chart beside it.

    Raises:
        SystemExit: when no record is a run of the grid, or the records mix devices or splits.
    """
    from lamar_hf.report import experiment_chart, experiment_markdown

    records = matching_records(grid, records)
    if not records:
        raise SystemExit(f"no run records of {grid.path} found: run `python benchmarks/experiment.py run` first")
    rows, settings = select(grid, records)
    first = records[0]
    results = {
        "experiment": path.stem, "dataset": first["dataset"], "split_fingerprint": first["split_fingerprint"],
        "device": first["device"], "max_users": first["max_users"], "time_budget": first["time_budget"],
        "grid": grid.describe(), "rows": rows, "settings": settings, "not_applicable": not_applicable_parts(grid),
        # The attribute ids and user embeddings the runs read (one of each per table, see matching_records).
        "inputs": {key: next(record[key] for record in records if record.get(key))
                   for key in OPTIONAL_IDENTITY if any(record.get(key) for record in records)},
        # Usually one entry; several when the grid's runs were trained over a library upgrade.
        "versions": [json.loads(versions) for versions in dict.fromkeys(
            json.dumps(record["provenance"].get("versions"), sort_keys=True) for record in records)],
        "command": command,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    partial.replace(path)
    path.with_suffix(".md").write_text(experiment_markdown(results))
    try:
        experiment_chart(results, path.with_suffix(".png"))
    except ImportError:
        print("matplotlib is not installed: no chart")
    print(path.with_suffix(".md").read_text())


def collect(options) -> None:
    """Write the results of a grid from run records kept in folders, wherever they were trained."""
    full = load_grid(options.config)
    grid = reduce_grid(full, options.settings, options.seeds, options.variants, options.override)
    records = matching_records(grid, read_records(options.runs), options.only_device)
    if not records:
        raise SystemExit(f"no run records of {options.config} in {', '.join(options.runs)}")
    options.max_users, options.time_budget = records[0]["max_users"], records[0]["time_budget"]
    write_results(results_path(options, full, grid, records[0]["dataset"]), grid, records,
                  "python benchmarks/experiment.py " + shlex.join(options.argv))


def results_path(options, grid: Grid, reduced: Grid, dataset: str) -> Path:
    """``benchmarks/results/<dataset>/<grid name>.json``; ``<grid name>_reduced.json`` for a part of the grid, a
    subset of users or a time budget, so that a smoke run never takes the place of the study (``--name`` to choose)."""
    whole = reduced == grid and not options.max_users and not options.time_budget
    name = options.name or (grid.name if whole else f"{grid.name}_reduced")
    return Path(options.results_dir or RESULTS / dataset) / f"{name}.json"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="write the sequences and MiniLM text embeddings (CPU, here)")
    p.add_argument("--dataset", required=True, help="a prepared folder (lamar prepare) or a raw P5 folder")
    p.add_argument("--signals_file", help="signals parquet (item_id, scenario, intent, topic, status; with "
                   "<kind>_cluster columns of `lamar attributes` for the attributes variant)")
    p.add_argument("--user_signals_file", help="user_signals parquet of `lamar enrich_users` (user-signals variant)")
    p.add_argument("--user_signal", default="intent", help="its column the user token embeds (default: intent)")
    p.add_argument("--out", help="default: outputs/experiments/<dataset name>/inputs")

    def grid_options(sub):
        sub.add_argument("--config", required=True, help="grid file under benchmarks/configs/ (YAML or JSON)")
        sub.add_argument("--settings", help="comma-separated setting names: a reduced grid (default: all)")
        sub.add_argument("--seeds", help="comma-separated seeds of the grid (default: all)")
        sub.add_argument("--variants", help="comma-separated variants of the grid (default: all)")
        sub.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                         help="set KEY in every setting, e.g. num_train_epochs=2 for a smoke run (a reduced grid)")
        sub.add_argument("--results_dir", help="default: benchmarks/results/<dataset name>")
        sub.add_argument("--name", help="results file name (default: the grid file's name, + _reduced for a part)")

    r = commands.add_parser("run", help="train every run of a grid not yet done, then write its results")
    grid_options(r)
    r.add_argument("--dataset", help="dataset name, for the default --inputs (default: the grid's)")
    r.add_argument("--inputs", help="folder written by prepare (default: outputs/experiments/<dataset>/inputs)")
    r.add_argument("--work", help="run records, with each run's log and checkpoints (default: "
                   "benchmarks/results/<dataset>/runs/<results name>; git keeps the records only)")
    r.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    r.add_argument("--jobs", type=int, default=1, help="trainings run in parallel processes")
    r.add_argument("--threads", type=int, default=None, help="torch threads per run (default: CPU cores / jobs)")
    r.add_argument("--max_users", type=int, default=None, help="first N users only (smoke runs)")
    r.add_argument("--time_budget", type=float, default=None,
                   help="seconds of training per run, after which it ends at the next epoch end and the best model so "
                        "far is tested (for a time-limited machine; the table marks such runs)")
    r.add_argument("--force", action="store_true", help="redo runs that already have records")
    c = commands.add_parser("collect", help="write a grid's results from run records (e.g. from several machines)")
    grid_options(c)
    c.add_argument("--runs", nargs="+", required=True, help="folders holding run records")
    c.add_argument("--only_device", help="only the runs of this device (as the records name it)")
    argv = sys.argv[1:] if argv is None else list(argv)
    options = parser.parse_args(argv)
    options.argv = argv  # quoted in the results, so that a table names the command that wrote it
    {"prepare": prepare, "run": run, "collect": collect}[options.command](options)


if __name__ == "__main__":
    main()
