"""``enrich_items``: the items of a benchmark in, a ``signals`` dataset out.

The work is a ``datasets.map(batched=True)`` over the distinct prompts, cut into chunks (shared out
across processes under ``accelerate launch``, the results gathered on every process). Every
finished row is cached at once in a :class:`RowCache`, keyed by its prompt and by everything else
that shapes the answer (generator and revision, adapter, prompt version, decoding settings,
lamar-hf version): a re-run loads every row without generating, and a run that was killed, or run
again with another ``--limit`` or ``chunk_size``, generates only the rows it does not have yet.

A row's ``status`` is ``ok``, ``retried`` (the first answer was invalid; the answer of the retry
decoding, named in the row's ``decoding``, is valid), ``invalid`` (an answer, but not a usable one;
``status_detail`` says why) or ``unavailable`` (the generator gave no answer: a server that stayed
down, an error). Unavailable rows are never cached: the next run asks for exactly those again.
Files written before these names called invalid rows ``failed``; they are read as they are.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
from datasets import Dataset, Features, Value, concatenate_datasets
from tqdm.auto import tqdm

from .. import __version__
from ..staging import recover_folder, staging_path, swap_in
from .analysis import USABLE
from .config import DEFAULT_DECODING, RETRY, DecodingSettings, resolve_signals, stable_hash
from .generator import GeneratedText, Generator
from .parsing import RULES_VERSION, describe_problems, find_problems, parse_answer
from .prompts import Exemplar, PromptBuilder, clean_text, has_metadata

logger = logging.getLogger(__name__)

STATUSES = ("ok", "retried", "invalid", "unavailable")
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
    """How the rows of one table are asked for and judged: a row's conversation, its answer parsed into the
    builder's signals, the problems of those signals, and so its status (first attempt, then the retry).

    This one holds the rules of the item signals; :mod:`lamar_hf.enrich.user_signals` subclasses it
    (``messages`` and ``find_problems``) and shares the rest of the pipeline.
    """

    def __init__(self, builder):
        self.builder = builder
        self.specs = builder.signals
        self.exemplar_answers = builder.exemplar_answers()

    def messages(self, row: dict) -> list[dict]:
        return self.builder.messages(row)

    def find_problems(self, signals: dict, row: dict) -> dict[str, str]:
        return find_problems(signals, self.specs, clean_text(row.get("title")), self.exemplar_answers)

    def judge(self, result: GeneratedText, row: dict) -> tuple[dict, dict]:
        if result.error is not None:
            return {spec.name: None for spec in self.specs}, {"generator": result.error}
        if not (result.text or "").strip():
            return {spec.name: None for spec in self.specs}, {"answer": "empty"}
        signals = parse_answer(result.text, self.specs)
        return signals, self.find_problems(signals, row)


def _finished_row(signals: dict, problems: dict, status: str, detail: str | None, decoding: DecodingSettings,
                  answer: str | None) -> dict:
    row = {name: None if name in problems else value for name, value in signals.items()}
    row.update(status=status, status_detail=detail or describe_problems(problems) or None,
               decoding=json.dumps(decoding.to_dict(), sort_keys=True), answer=answer)
    return row


def _generate_rows(items: list[dict], generator: Generator, judge: _RowJudge, decoding: DecodingSettings,
                   retry_decoding: DecodingSettings | None, progress) -> list[dict]:
    """Generate the rows of ``items``, parsed and validated by ``judge``; retry the invalid ones once with
    ``retry_decoding``."""
    conversations = [judge.messages(item) for item in items]
    results = generator.generate_rows(conversations, decoding, progress=progress, answer_signals=judge.specs)
    rows = []
    for result, item in zip(results, items):
        signals, problems = judge.judge(result, item)
        status = "unavailable" if result.error is not None else "invalid" if problems else "ok"
        rows.append(_finished_row(signals, problems, status, None, decoding, result.text))
        rows[-1]["_problems"] = problems

    invalid = [index for index, row in enumerate(rows) if row["status"] == "invalid"]
    if invalid and retry_decoding is not None:
        retries = generator.generate_rows([conversations[index] for index in invalid], retry_decoding,
                                          answer_signals=judge.specs)
        for index, result in zip(invalid, retries):
            first_problems = rows[index]["_problems"]
            first_detail = "first answer: " + describe_problems(first_problems)
            signals, problems = judge.judge(result, items[index])
            if result.error is not None:  # the retry is owed: not a final row, the next run asks again
                rows[index] = _finished_row({}, {}, "unavailable", f"retry: generator: {result.error}; {first_detail}",
                                            retry_decoding, None)
            elif not problems:
                rows[index] = _finished_row(signals, problems, "retried", first_detail, retry_decoding, result.text)
            elif len(problems) <= len(first_problems):  # fewer problems; the retry (the newer answer) wins ties
                rows[index] = _finished_row(signals, problems, "invalid", None, retry_decoding, result.text)
    for row in rows:
        row.pop("_problems", None)
    return rows


def _row_key(run_fingerprint: str, prompt_key: str) -> str:
    return stable_hash([run_fingerprint, prompt_key], 32)


def _generate_chunk(batch: dict, generator: Generator, judge: _RowJudge, decoding: DecodingSettings,
                    retry_decoding: DecodingSettings | None, progress, cache: "RowCache | None",
                    run_fingerprint: str, counts: dict) -> dict:
    """The ``map`` function: cached rows from the cache, the others generated and cached as they finish."""
    names = [spec.name for spec in judge.specs]
    size = len(batch["prompt_key"])
    items = [{key: batch[key][row] for key in batch} for row in range(size)]
    keys = [_row_key(run_fingerprint, prompt_key) for prompt_key in batch["prompt_key"]]
    done = cache.get(keys) if cache is not None else {}
    counts["from_cache"] += len(done)
    progress.update(len(done))
    pending = [row for row in range(size) if keys[row] not in done]
    # Generated a generator batch at a time, each cached as soon as it is done: a kill loses at most one.
    step = max(1, int(generator.batch_size))
    for start in range(0, len(pending), step):
        rows = pending[start : start + step]
        finished = _generate_rows([items[row] for row in rows], generator, judge, decoding, retry_decoding,
                                  progress)
        counts["generated"] += len(rows)
        new = {keys[row]: result for row, result in zip(rows, finished)}
        done.update(new)
        if cache is not None:
            cache.put({key: result for key, result in new.items() if result["status"] != "unavailable"})
    out = {"prompt_key": batch["prompt_key"]}
    for column in [*names, "status", "status_detail", "decoding", "answer"]:
        out[column] = [done[key].get(column) for key in keys]
    return out


class RowCache:
    """Finished rows of :func:`enrich_items` in one SQLite file, ``cache_dir/enrich-rows.sqlite``.

    A row is committed as soon as it is put, so a process killed right after keeps it; SQLite's
    locking lets several processes (``accelerate launch``) share the file. A file that is not a
    readable cache is set aside (``.corrupt-<time>``) with a warning and a new one is started.
    """

    FILE_NAME = "enrich-rows.sqlite"

    def __init__(self, folder):
        self.path = Path(folder) / self.FILE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connection = self._open()
        except sqlite3.DatabaseError as error:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            logger.warning("%s is not a readable enrichment cache (%s); set it aside as %s and starting anew",
                           self.path, error, aside.name)
            self.path.rename(aside)
            self._connection = self._open()

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=300)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE IF NOT EXISTS rows (key TEXT PRIMARY KEY, row TEXT NOT NULL)")
            connection.commit()
        except sqlite3.DatabaseError:
            connection.close()
            raise
        return connection

    def get(self, keys: Sequence[str]) -> dict[str, dict]:
        found = {}
        for start in range(0, len(keys), 500):
            part = list(keys[start : start + 500])
            query = f"SELECT key, row FROM rows WHERE key IN ({','.join('?' * len(part))})"
            found.update((key, json.loads(row)) for key, row in self._connection.execute(query, part))
        return found

    def put(self, rows: dict[str, dict]) -> None:
        if rows:
            with self._connection:
                self._connection.executemany("INSERT OR REPLACE INTO rows (key, row) VALUES (?, ?)",
                                             [(key, json.dumps(row, ensure_ascii=False)) for key, row in rows.items()])

    def __len__(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM rows").fetchone()[0]

    def close(self) -> None:
        self._connection.close()


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
    ``status`` (ok / retried / invalid / unavailable, see the module docstring), ``status_detail``
    and provenance columns.

    ``prompt`` is the :class:`PromptBuilder` to use; without it the generator's own prompt format
    (a tuned adapter's) or a new builder for ``signals`` and ``exemplars``. Identical prompts are
    generated once. With ``cache_dir`` every finished row is cached there (a :class:`RowCache`):
    a re-run or a resumed run loads the rows it has instead of generating them, whatever
    ``chunk_size`` (the share of work of one ``map`` call and one process) or subset of items.
    Rows whose answer is unusable keep ``None`` for the failing signals and say why in
    ``status_detail``; nothing raises for a bad row. ``keep_answers`` adds the raw answer text as a
    column ``answer``. A dict passed as ``report`` is filled with counts: ``items``, ``prompts``
    (distinct), ``from_cache`` and ``generated`` (prompts of this process), ``no_metadata``.
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
    results = _run_chunks(work, generator, _RowJudge(builder), decoding, retry_decoding, run_fingerprint, cache_dir,
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
        output["status"].append(result["status"] if result else "invalid")
        output["status_detail"].append(result["status_detail"] if result else NO_METADATA)
        output["decoding"].append(result["decoding"] if result else None)
        for name, value in constant.items():
            output[name].append(value)
        if keep_answers:
            output["answer"].append(result["answer"] if result else None)
    return Dataset.from_dict(output, features=features)


def process_state():
    """accelerate's view of this process: under ``accelerate launch`` one of several, else the only one.

    On a machine without a GPU the processes talk over gloo (``cpu=True``); the state is shared,
    so a script that made its own ``PartialState`` first keeps it.
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _run_chunks(work, generator, judge: _RowJudge, decoding, retry_decoding, run_fingerprint, cache_dir, chunk_size,
                progress, counts: dict, unit: str = "item", desc: str = "enrich") -> list[dict]:
    """The rows of ``work`` (each with its ``prompt_key``), in order: chunks shared out over the processes, each
    a ``datasets.map`` of :func:`_generate_chunk`, gathered on every process. ``unit`` and ``desc`` label the bar."""
    from accelerate.utils import gather_object

    state = process_state()
    chunks = [work[start : start + chunk_size] for start in range(0, len(work), chunk_size)]
    mine = [index for index in range(len(chunks)) if index % state.num_processes == state.process_index]
    cache = RowCache(cache_dir) if cache_dir is not None else None
    features = _work_features([spec.name for spec in judge.specs])
    total = sum(len(chunks[index]) for index in mine)
    bar = tqdm(total=total, unit=unit, desc=desc, disable=not progress or not state.is_local_main_process,
               dynamic_ncols=True)
    produced: list[tuple[int, list[dict]]] = []
    try:
        with _quiet_datasets():
            for index in mine:
                chunk = chunks[index]
                source = Dataset.from_list(chunk)
                result = source.map(
                    _generate_chunk,
                    batched=True,
                    batch_size=len(chunk),
                    fn_kwargs={"generator": generator, "judge": judge, "decoding": decoding,
                               "retry_decoding": retry_decoding, "progress": bar, "cache": cache,
                               "run_fingerprint": run_fingerprint, "counts": counts},
                    remove_columns=source.column_names,
                    features=features,
                    # The rows are cached one by one in the RowCache, not as a map cache file.
                    new_fingerprint=stable_hash([run_fingerprint, [row["prompt_key"] for row in chunk]], 32),
                    keep_in_memory=True,
                    load_from_cache_file=False,
                )
                produced.append((index, result.to_list()))
    finally:
        bar.close()
        if cache is not None:
            cache.close()
    if state.num_processes > 1:
        produced = gather_object(produced)
    counts["unavailable"] = sum(row["status"] == "unavailable" for _, rows in produced for row in rows)
    return [row for _, chunk_rows in sorted(produced, key=lambda pair: pair[0]) for row in chunk_rows]


# Hidden siblings of signals/ while it is replaced: .signals-tmp-<pid>-<random>, .signals-old-<pid>-<random>.
STAGING_PREFIX = ".signals-"


def recover_signals(out_dir) -> None:
    """Clean up after a :func:`write_signals` that was killed: when ``signals/`` is missing because the
    kill came between setting the old folder aside and renaming the new one in, the old one is
    put back; hidden staging folders of processes that are gone are removed."""
    recover_folder(Path(out_dir) / SIGNALS_FILE.parent, STAGING_PREFIX,
                   complete=lambda folder: (folder / SIGNALS_FILE.name).is_file())
    for folder in Path(out_dir).glob(".signals-????????"):  # staging folders named by earlier code (no pid)
        if folder.is_dir() and re.fullmatch(r"\.signals-[0-9a-f]{8}", folder.name):
            shutil.rmtree(folder, ignore_errors=True)


def existing_signal_rows(out_dir) -> int | None:
    """How many rows ``out_dir/signals`` holds (``None`` without one)."""
    path = Path(out_dir) / SIGNALS_FILE
    if not path.is_file():
        return None
    try:
        return pq.read_metadata(path).num_rows
    except Exception as error:  # noqa: BLE001 - pyarrow raises several types for an unreadable file
        raise ValueError(f"{path}: not a readable parquet file ({error}); remove it or pass --overwrite") from None


def check_signals_overwrite(out_dir, rows: int, overwrite: bool = False) -> None:
    """Refuse (``FileExistsError``) to write ``rows`` rows over a signals config that holds more, unless ``overwrite``."""
    if overwrite:
        return
    existing = existing_signal_rows(out_dir)
    if existing is not None and existing > rows:
        raise FileExistsError(f"{Path(out_dir) / SIGNALS_FILE} holds {existing:,} rows and this run would write "
                              f"{rows:,} over it; pass --overwrite (overwrite=True) to replace it, or write elsewhere")


def write_signals(signals: Dataset, out_dir, manifest: dict | None = None, overwrite: bool = False) -> Path:
    """Write ``out_dir/signals/train-00000-of-00001.parquet`` atomically.

    The new folder is written beside the old one, the old one renamed aside, the new one renamed
    in, then the old one deleted; a kill in between leaves the old one aside, which the next call
    (or :func:`recover_signals`) puts back. Fewer rows than an existing signals config holds are
    refused without ``overwrite`` (see :func:`check_signals_overwrite`); other folders in
    ``out_dir`` are left alone. ``manifest`` (run settings and counts) goes to ``out_dir/lamar_enrich.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recover_signals(out_dir)
    check_signals_overwrite(out_dir, len(signals), overwrite)
    staging = staging_path(out_dir, STAGING_PREFIX)
    staging.mkdir()
    try:
        signals.to_parquet(str(staging / SIGNALS_FILE.name))
        swap_in(staging, out_dir / SIGNALS_FILE.parent, STAGING_PREFIX)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if manifest is not None:
        path = out_dir / "lamar_enrich.json"
        partial = path.with_suffix(".json.tmp")
        partial.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        partial.replace(path)
    return out_dir / SIGNALS_FILE


def status_counts(signals: Dataset) -> dict[str, int]:
    """Rows per status: every name of :data:`STATUSES` (0 when absent) and any other name found (``failed``
    of older files)."""
    counts = dict.fromkeys(STATUSES, 0)
    for status in signals["status"]:
        counts[status] = counts.get(status, 0) + 1
    return counts


def validity(counts: dict[str, int]) -> float:
    """The share of usable rows (``ok`` and ``retried``) among all rows of :func:`status_counts`."""
    total = sum(counts.values())
    return sum(counts.get(status, 0) for status in USABLE) / total if total else 0.0
