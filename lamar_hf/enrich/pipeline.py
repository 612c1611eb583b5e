"""``enrich_items``: the items of a benchmark in, a ``signals`` dataset out.

The work is a ``datasets.map(batched=True)`` over the distinct prompts, cut into chunks. Each chunk
is cached in its own Arrow file under a fingerprint made of everything that shapes its output
(the prompts, generator and revision, adapter, prompt version, decoding settings, lamar-hf
version), so a re-run loads every chunk from the cache without generating, and a run killed
half-way loads the chunks it finished and generates only the rest. Under ``accelerate launch``
the chunks are shared out across processes and the results gathered on every process.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from datasets import Dataset, Features, Value, concatenate_datasets
from tqdm.auto import tqdm

from .. import __version__
from .config import DEFAULT_DECODING, RETRY, DecodingSettings, resolve_signals, stable_hash
from .generator import GeneratedText, Generator
from .parsing import RULES_VERSION, describe_problems, find_problems, parse_answer
from .prompts import Exemplar, PromptBuilder, clean_text, has_metadata

logger = logging.getLogger(__name__)

STATUSES = ("ok", "retried", "failed")
PROVENANCE_COLUMNS = ("generator", "generator_revision", "adapter", "prompt_version", "decoding", "lamar_hf_version")
SIGNALS_FILE = Path("signals") / "train-00000-of-00001.parquet"
NO_METADATA = "no title, brand, categories or description to describe"


def signal_features(signal_names: Sequence[str]) -> Features:
    """The features of a ``signals`` dataset: item id, one string per signal, status, provenance."""
    columns = {"item_id": Value("int32")}
    columns.update({name: Value("string") for name in signal_names})
    columns.update({"status": Value("string"), "status_detail": Value("string")})
    columns.update({name: Value("string") for name in PROVENANCE_COLUMNS})
    return Features(columns)


def _work_features(signal_names: Sequence[str]) -> Features:
    columns = {"prompt_key": Value("string")}
    columns.update({name: Value("string") for name in signal_names})
    columns.update({"status": Value("string"), "status_detail": Value("string"), "decoding": Value("string"),
                    "answer": Value("string")})
    return Features(columns)


@contextmanager
def _quiet_datasets():
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


class _RowJudge:
    """Parses answers and decides each row's status (first attempt, then the retry)."""

    def __init__(self, builder: PromptBuilder):
        self.specs = builder.signals
        self.exemplar_answers = builder.exemplar_answers()

    def judge(self, result: GeneratedText, title: str | None) -> tuple[dict, dict]:
        if result.error is not None:
            return {spec.name: None for spec in self.specs}, {"generator": result.error}
        if not (result.text or "").strip():
            return {spec.name: None for spec in self.specs}, {"answer": "empty"}
        signals = parse_answer(result.text, self.specs)
        return signals, find_problems(signals, self.specs, title, self.exemplar_answers)


def _generate_chunk(batch: dict, generator: Generator, builder: PromptBuilder, decoding: DecodingSettings,
                    retry_decoding: DecodingSettings | None, progress) -> dict:
    """The ``map`` function: generate, parse, validate, retry the failures once."""
    names = [spec.name for spec in builder.signals]
    size = len(batch["prompt_key"])
    items = [{key: batch[key][row] for key in batch} for row in range(size)]
    conversations = [builder.messages(item) for item in items]
    judge = _RowJudge(builder)
    results = generator.generate_rows(conversations, decoding, progress=progress, answer_signals=builder.signals)
    outcomes = [judge.judge(result, clean_text(item.get("title"))) for result, item in zip(results, items)]
    statuses = ["ok" if not problems else "failed" for _, problems in outcomes]
    used = [decoding] * size
    answers = [result.text for result in results]

    failed = [row for row in range(size) if statuses[row] == "failed"]
    first_problems_text: dict[int, str] = {}
    if failed and retry_decoding is not None:
        retries = generator.generate_rows([conversations[row] for row in failed], retry_decoding,
                                          answer_signals=builder.signals)
        for row, result in zip(failed, retries):
            signals, problems = judge.judge(result, clean_text(items[row].get("title")))
            first_problems = outcomes[row][1]
            # Keep the attempt with fewer problems; the retry wins ties (it is the newer answer).
            if len(problems) <= len(first_problems):
                outcomes[row] = (signals, problems)
                used[row] = retry_decoding
                answers[row] = result.text
            statuses[row] = "retried" if not problems else "failed"
            if not problems:
                first_problems_text[row] = "first answer: " + describe_problems(first_problems)

    out = {"prompt_key": batch["prompt_key"]}
    for name in names:
        out[name] = [None if name in problems else signals[name] for signals, problems in outcomes]
    out["status"] = statuses
    out["status_detail"] = [first_problems_text.get(row) or describe_problems(problems) or None
                            for row, (_, problems) in enumerate(outcomes)]
    out["decoding"] = [json.dumps(settings.to_dict(), sort_keys=True) for settings in used]
    out["answer"] = answers
    return out


def _item_rows(items: Dataset) -> list[dict]:
    if "item_id" not in items.column_names:
        raise ValueError(f"the items have no item_id column (columns: {items.column_names})")
    return items.to_list()


def enrich_items(
    items: Dataset,
    generator: Generator,
    signals=None,
    prompt: PromptBuilder | None = None,
    exemplars: Sequence[Exemplar] | None = None,
    decoding: DecodingSettings = DEFAULT_DECODING,
    retry_decoding: DecodingSettings | None = RETRY,
    cache_dir=None,
    chunk_size: int = 512,
    progress: bool = True,
    keep_answers: bool = False,
    report: dict | None = None,
) -> Dataset:
    """Generate the signals of every item: one row per item with ``item_id``, one column per signal,
    ``status`` (ok / retried / failed), ``status_detail`` and provenance columns.

    ``prompt`` is the :class:`PromptBuilder` to use; without it the generator's own prompt format
    (a tuned adapter's) or a new builder for ``signals`` and ``exemplars``. Identical prompts are
    generated once. With ``cache_dir`` every chunk of ``chunk_size`` distinct prompts is cached
    there: a re-run or a resumed run loads finished chunks instead of generating them. Rows whose
    answer is unusable keep ``None`` for the failing signals and say why in ``status_detail``;
    nothing raises for a bad row. ``keep_answers`` adds the raw answer text as a column ``answer``.
    A dict passed as ``report`` is filled with counts: ``items``, ``prompts`` (distinct),
    ``from_cache`` and ``generated`` (prompts of this process), ``no_metadata``.
    """
    builder = prompt or generator.prompt or PromptBuilder(signals=resolve_signals(signals),
                                                          exemplars=tuple(exemplars or ()))
    if signals is not None and prompt is not None:
        wanted = [spec.name for spec in resolve_signals(signals)]
        if wanted != [spec.name for spec in builder.signals]:
            raise ValueError(f"signals {wanted} differ from the prompt's {[s.name for s in builder.signals]}")
    names = [spec.name for spec in builder.signals]
    rows = _item_rows(items)
    if not rows:
        return Dataset.from_dict({name: [] for name in signal_features(names)}, features=signal_features(names))

    # One work row per distinct prompt; items without any metadata are not sent to the model.
    keys: list[str | None] = []
    work_rows: dict[str, dict] = {}
    for row in rows:
        if not has_metadata(row, builder.metadata):
            keys.append(None)
            continue
        key = stable_hash(builder.messages(row), 24)
        keys.append(key)
        work_rows.setdefault(key, row)
    work = list(work_rows.values())
    for key, row in zip(work_rows, work):
        row["prompt_key"] = key

    run_fingerprint = stable_hash({
        "provenance": generator.provenance(),
        "prompt": builder.to_dict(),
        "decoding": decoding.to_dict(),
        "retry": retry_decoding.to_dict() if retry_decoding else None,
        "lamar_hf": __version__,
        "validation_rules": RULES_VERSION,
    })
    counts = {"items": len(rows), "prompts": len(work), "from_cache": 0, "generated": 0,
              "no_metadata": keys.count(None)}
    results = _run_chunks(work, generator, builder, decoding, retry_decoding, run_fingerprint, cache_dir,
                          chunk_size, progress, counts)
    if report is not None:
        report.update(counts)
    by_key = {row["prompt_key"]: row for row in results}

    provenance = generator.provenance()
    constant = {
        "generator": provenance.get("generator"),
        "generator_revision": provenance.get("generator_revision"),
        "adapter": provenance.get("adapter"),
        "prompt_version": builder.version,
        "lamar_hf_version": __version__,
    }
    features = signal_features(names)
    if keep_answers:
        features["answer"] = Value("string")
    output = {name: [] for name in features}
    for row, key in zip(rows, keys):
        result = by_key.get(key) if key is not None else None
        output["item_id"].append(row["item_id"])
        for name in names:
            output[name].append(result[name] if result else None)
        output["status"].append(result["status"] if result else "failed")
        output["status_detail"].append(result["status_detail"] if result else NO_METADATA)
        output["decoding"].append(result["decoding"] if result else None)
        for name, value in constant.items():
            output[name].append(value)
        if keep_answers:
            output["answer"].append(result["answer"] if result else None)
    return Dataset.from_dict(output, features=features)


def _chunk_fingerprint(run_fingerprint: str, chunk: list[dict]) -> str:
    return stable_hash([run_fingerprint, [row["prompt_key"] for row in chunk]], 32)


def process_state():
    """accelerate's view of this process: under ``accelerate launch`` one of several, else the only one.

    On a machine without a GPU the processes talk over gloo (``cpu=True``); the state is shared,
    so a script that made its own ``PartialState`` first keeps it.
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _run_chunks(work, generator, builder, decoding, retry_decoding, run_fingerprint, cache_dir, chunk_size,
                progress, counts: dict) -> list[dict]:
    from accelerate.utils import gather_object

    state = process_state()
    chunks = [work[start : start + chunk_size] for start in range(0, len(work), chunk_size)]
    mine = [index for index in range(len(chunks)) if index % state.num_processes == state.process_index]
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    features = _work_features([spec.name for spec in builder.signals])
    total = sum(len(chunks[index]) for index in mine)
    bar = tqdm(total=total, unit="item", desc="enrich", disable=not progress or not state.is_local_main_process,
               dynamic_ncols=True)
    produced: list[tuple[int, list[dict]]] = []
    with _quiet_datasets():
        for index in mine:
            chunk = chunks[index]
            fingerprint = _chunk_fingerprint(run_fingerprint, chunk)
            cache_file = Path(cache_dir) / f"enrich-{fingerprint}.arrow" if cache_dir is not None else None
            if cache_file is not None and cache_file.is_file():
                bar.update(len(chunk))  # finished in an earlier run
                counts["from_cache"] += len(chunk)
            else:
                counts["generated"] += len(chunk)
            source = Dataset.from_list(chunk)
            result = source.map(
                _generate_chunk,
                batched=True,
                batch_size=len(chunk),
                fn_kwargs={"generator": generator, "builder": builder, "decoding": decoding,
                           "retry_decoding": retry_decoding, "progress": bar},
                remove_columns=source.column_names,
                features=features,
                new_fingerprint=fingerprint,
                cache_file_name=str(cache_file) if cache_file is not None else None,
                load_from_cache_file=cache_file is not None,
            )
            produced.append((index, result.to_list()))
    bar.close()
    if state.num_processes > 1:
        produced = gather_object(produced)
    return [row for _, chunk_rows in sorted(produced, key=lambda pair: pair[0]) for row in chunk_rows]


def write_signals(signals: Dataset, out_dir, manifest: dict | None = None) -> Path:
    """Write ``out_dir/signals/train-00000-of-00001.parquet`` atomically (a temp folder, then a rename).

    An existing ``signals`` folder is replaced; other folders in ``out_dir`` are left alone.
    ``manifest`` (run settings and counts) goes to ``out_dir/lamar_enrich.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / SIGNALS_FILE.parent
    temporary = out_dir / f".signals-{uuid.uuid4().hex[:8]}"
    temporary.mkdir()
    try:
        signals.to_parquet(str(temporary / SIGNALS_FILE.name))
        if target.exists():
            old = out_dir / f".signals-old-{uuid.uuid4().hex[:8]}"
            target.rename(old)
            temporary.rename(target)
            shutil.rmtree(old)
        else:
            temporary.rename(target)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    if manifest is not None:
        path = out_dir / "lamar_enrich.json"
        partial = path.with_suffix(".json.tmp")
        partial.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        partial.replace(path)
    return out_dir / SIGNALS_FILE


def status_counts(signals: Dataset) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for status in signals["status"]:
        counts[status] = counts.get(status, 0) + 1
    return counts
