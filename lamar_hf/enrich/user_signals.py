"""Sequence-level signals (the ``user_signals`` config): an LLM reads a user's training history and
writes what the user is shopping for.

Which history each split's signal is written from — the training history, for all three:

- The prompt shows the titles of the last ``max_history`` items (default 10; items without a
  title are skipped) of the user's training sequence, which is ``history + [target]`` of the
  user's row in the ``sequences`` ``train`` split (see :mod:`lamar_hf.data.schema`), oldest first.
- One signal per user serves every split: ``train`` rows, and the ``validation`` and ``test``
  targets, which are predicted with this same training-history signal. The validation item and the
  test item are never shown, so nothing of a target leaks into the signal that predicts it. (Within
  training the signal does summarise items that are also training targets, as any user feature
  computed over the training period does.)
- :func:`enrich_users` takes the ``train`` split only: a ``DatasetDict`` gives its ``train``, a
  ``Dataset`` whose ``split`` says ``validation`` or ``test`` is refused. Every row records the
  item ids its prompt showed (``history_items``), so the table itself shows what each signal saw.

The generation reuses the item pipeline (:mod:`lamar_hf.enrich.pipeline`): the same generators,
the ``datasets.map`` over chunks of distinct prompts (shared out under ``accelerate launch``), the
SQLite :class:`~lamar_hf.enrich.pipeline.RowCache` (a re-run or a killed run generates only what it
lacks), the statuses ``ok`` / ``retried`` / ``invalid`` / ``unavailable`` with one retry decoding,
and the provenance columns. The validator (:func:`find_user_problems`) applies the item rules
(:func:`~lamar_hf.enrich.parsing.find_problems`: present, within the word limit, no placeholder,
no loop, not an exemplar answer) plus at least ``min_words`` words, no echo of the instruction
or of an exemplar answer, and no copy of any title shown.

The ``user_signals`` table (:func:`user_signal_features`): ``user_id``, one string column per
signal (``intent`` by default), ``status``, ``status_detail``, ``history_items`` and the provenance
columns of the item signals; it holds no text of the items.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq
from datasets import Dataset, Features, List, Value

from .. import __version__
from ..staging import recover_folder, staging_path, swap_in
from .config import DEFAULT_DECODING, RETRY, DecodingSettings, SignalSpec, stable_hash
from .generator import Generator
from .parsing import RULES_VERSION, find_problems, format_answer, words
from .pipeline import PROVENANCE_COLUMNS, _RowJudge, _run_chunks
from .prompts import clean_text, cut_words

logger = logging.getLogger(__name__)

USER_SIGNALS_CONFIG = "user_signals"
USER_SIGNALS_FILE = Path(USER_SIGNALS_CONFIG) / "train-00000-of-00001.parquet"
USER_MANIFEST = "lamar_enrich_users.json"
USER_PROMPT_FORMAT = "lamar-user-prompt"
# Bump when find_user_problems changes: it is part of the cache fingerprint.
USER_RULES_VERSION = 3
DEFAULT_MAX_HISTORY = 10
NO_HISTORY = "no item with a title in the training history"

USER_INTENT = SignalSpec("intent", "what this shopper is trying to achieve with these purchases, as a verb phrase", 12)
USER_SCENARIO = SignalSpec("scenario", "the situation these purchases are for (who, when, where)", 12)
USER_SPECS = {spec.name: spec for spec in (USER_INTENT, USER_SCENARIO)}
DEFAULT_USER_SIGNALS: tuple[SignalSpec, ...] = (USER_INTENT,)

USER_SYSTEM = (
    "You read the recent purchases of one shopper of an online shop, oldest first, and say in your own "
    "words what the shopper is shopping for. Answer with exactly these lines:\n{lines}\n"
    "Describe the shopper, not one product. Do not repeat a title."
)


@dataclass
class UserExemplar:
    """A worked example for the few-shot user prompt: purchase titles and the signals written for them."""

    titles: tuple[str, ...]
    signals: dict

    def to_dict(self) -> dict:
        return {"titles": list(self.titles), "signals": dict(self.signals)}


# Invented shoppers and products (no benchmark's items), so that no exemplar is anyone's real history. A small
# model copies the answer of the last exemplar: ending on one far from any shop's domain (cooking) makes a copy
# fail validation rather than pass for an answer. Measured with SmolLM2-135M (greedy) on the first Amazon Beauty
# users: 12 of 12 valid first answers in this order, 0 of 12 with the makeup exemplar last (all copies of it);
# lamar enrich-users on 32 users: 29 ok, 3 retried, yet 6 of the 32 intents are one phrase.
USER_EXEMPLARS: tuple[UserExemplar, ...] = (
    UserExemplar(("Matte Liquid Lipstick, Ruby Red", "Long-Wear Makeup Setting Spray", "Volumizing Waterproof Mascara"),
                 {"intent": "create a bold makeup look that lasts all night",
                  "scenario": "getting ready for a wedding party in the evening"}),
    UserExemplar(("Tear-Free Baby Shampoo, 16 oz", "Hooded Cotton Bath Towel for Infants", "Unscented Diaper Cream"),
                 {"intent": "keep a newborn clean and comfortable",
                  "scenario": "new parents setting up a baby's bath routine"}),
    UserExemplar(("Waterproof Trail Running Shoes", "Insulated Steel Water Bottle, 32 oz", "Reflective Running Vest"),
                 {"intent": "train for long runs outdoors",
                  "scenario": "a runner preparing for early morning trail races"}),
    UserExemplar(("Cast Iron Skillet, 12 inch", "Silicone Spatula Set", "Cookbook: Quick Weeknight Dinners"),
                 {"intent": "cook quick family dinners at home",
                  "scenario": "a busy parent cooking after work"}),
)


def resolve_user_signals(names_or_specs=None) -> tuple[SignalSpec, ...]:
    """``None`` (``intent``), names of the user signals (``intent``, ``scenario``, or a comma-separated string) or
    :class:`SignalSpec` objects -> specs. Raises ``ValueError`` for an unknown name or a name given twice."""
    if names_or_specs is None:
        return DEFAULT_USER_SIGNALS
    if isinstance(names_or_specs, str):
        names_or_specs = [part.strip() for part in names_or_specs.split(",") if part.strip()]
    specs = []
    for entry in names_or_specs:
        if isinstance(entry, SignalSpec):
            specs.append(entry)
        elif entry in USER_SPECS:
            specs.append(USER_SPECS[entry])
        else:
            raise ValueError(f"unknown user signal {entry!r}; the built-in ones are {', '.join(USER_SPECS)} "
                             "(or pass a SignalSpec)")
    names = [spec.name for spec in specs]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"user signals must be a non-empty list of distinct names, got {names}")
    return tuple(specs)


@dataclass
class UserPromptBuilder:
    """Builds the chat conversation that asks an LLM for one user's signals from training-history titles.

    Few-shot: the system message, one user/assistant turn per exemplar (invented shoppers), then the
    user's titles. ``max_history`` titled items are shown (the last ones), each cut to
    ``max_title_words``; answers need at least ``min_words`` words.
    """

    signals: tuple[SignalSpec, ...] = DEFAULT_USER_SIGNALS
    exemplars: tuple[UserExemplar, ...] = USER_EXEMPLARS
    system: str = USER_SYSTEM
    max_history: int = DEFAULT_MAX_HISTORY
    max_title_words: int = 12
    min_words: int = 2

    def __post_init__(self):
        self.signals = resolve_user_signals(self.signals)
        self.exemplars = tuple(self.exemplars)
        if self.max_history < 1:
            raise ValueError(f"max_history must be at least 1, got {self.max_history}")
        if self.min_words < 1 or self.max_title_words < 1:
            raise ValueError(f"min_words and max_title_words must be at least 1, got {self.min_words}, "
                             f"{self.max_title_words}")
        names = {spec.name for spec in self.signals}
        for number, exemplar in enumerate(self.exemplars):
            missing = names - set(exemplar.signals)
            if missing:
                raise ValueError(f"user exemplar {number} has no {sorted(missing)}")

    def select(self, item_ids: Sequence[int], titles: Mapping[int, str]) -> tuple[list[int], list[str]]:
        """The last ``max_history`` items of ``item_ids`` that have a title, oldest first: ``(ids, titles)``."""
        shown = [item for item in item_ids if titles.get(item)][-self.max_history:]
        return shown, [titles[item] for item in shown]

    def history_text(self, titles: Sequence[str]) -> str:
        lines = [f"- {cut_words(clean_text(title), self.max_title_words)}" for title in titles]
        return "Purchases, oldest first:\n" + "\n".join(lines)

    def system_message(self) -> str:
        lines = "\n".join(f"{spec.name}: <{spec.instruction}; at most {spec.max_words} words>"
                          for spec in self.signals)
        return self.system.format(lines=lines)

    def messages(self, titles: Sequence[str]) -> list[dict]:
        """The conversation for a user whose shown history has ``titles``, ending with the user turn."""
        conversation = [{"role": "system", "content": self.system_message()}]
        for exemplar in self.exemplars:
            conversation.append({"role": "user", "content": self.history_text(exemplar.titles)})
            conversation.append({"role": "assistant", "content": format_answer(exemplar.signals, self.signals)})
        conversation.append({"role": "user", "content": self.history_text(titles)})
        return conversation

    def exemplar_answers(self) -> list[str]:
        return [str(exemplar.signals[spec.name]) for exemplar in self.exemplars for spec in self.signals]

    def to_dict(self) -> dict:
        return {"format": USER_PROMPT_FORMAT, "signals": [asdict(spec) for spec in self.signals],
                "exemplars": [exemplar.to_dict() for exemplar in self.exemplars], "system": self.system,
                "max_history": self.max_history, "max_title_words": self.max_title_words,
                "min_words": self.min_words}

    @property
    def version(self) -> str:
        """A hash of everything that shapes the prompt and the validation."""
        return stable_hash(self.to_dict(), 12)


def find_user_problems(signals: dict, specs: Sequence[SignalSpec], titles: Sequence[str],
                       exemplar_answers: Sequence[str] = (), min_words: int = 2) -> dict[str, str]:
    """Why each unusable user signal is unusable (``{name: problem}``, empty when all are fine).

    The item rules of :func:`~lamar_hf.enrich.parsing.find_problems` (without a title), then: fewer
    than ``min_words`` words, four consecutive words of the signal's instruction or of an exemplar
    answer, or a copy of any of ``titles`` (the title itself, the whole title with words around it, or
    four consecutive words of it).
    """
    problems = find_problems(signals, specs, None, exemplar_answers)
    for spec in specs:
        if spec.name in problems:
            continue
        count = len(words(signals[spec.name]))
        if count < min_words:
            problems[spec.name] = f"{count} word{'s' * (count != 1)}, fewer than {min_words}"
            continue
        echo = find_problems({spec.name: signals[spec.name]}, [spec], spec.instruction).get(spec.name)
        if echo == "copy of the title":
            # "The shopper is trying to achieve ...": a zero-shot small model echoing the instruction.
            problems[spec.name] = "copy of the instruction"
            continue
        # A small model copies the exemplars with a word changed ("make a makeup look that lasts all night").
        if any(find_problems({spec.name: signals[spec.name]}, [spec], answer).get(spec.name) == "copy of the title"
               for answer in exemplar_answers):
            problems[spec.name] = "copy of an exemplar answer"
            continue
        for title in titles:
            if find_problems({spec.name: signals[spec.name]}, [spec], title).get(spec.name) == "copy of the title":
                problems[spec.name] = "copy of a history title"
                break
    return problems


class _UserRowJudge(_RowJudge):
    """The item pipeline's judge with the user rules: a work row holds the ``titles`` its prompt shows."""

    def messages(self, row: dict) -> list[dict]:
        return self.builder.messages(row["titles"])

    def find_problems(self, signals: dict, row: dict) -> dict[str, str]:
        return find_user_problems(signals, self.specs, row["titles"], self.exemplar_answers, self.builder.min_words)


def user_signal_features(signal_names: Sequence[str]) -> Features:
    """The features of a ``user_signals`` table: user id, one string per signal, status, the items shown, provenance."""
    columns = {"user_id": Value("int32")}
    columns.update({name: Value("string") for name in signal_names})
    columns.update({"status": Value("string"), "status_detail": Value("string"), "history_items": List(Value("int32"))})
    columns.update({name: Value("string") for name in PROVENANCE_COLUMNS})
    return Features(columns)


def _train_split(sequences) -> Dataset:
    if isinstance(sequences, Mapping):
        if "train" not in sequences:
            raise ValueError(f"the sequences have no train split (splits: {', '.join(sequences)})")
        return sequences["train"]
    split = getattr(sequences, "split", None)
    if split is not None and str(split) != "train":
        raise ValueError(f"user signals are written from the train split only (its history + target is the "
                         f"training sequence), got the {split} split")
    return sequences


def training_histories(sequences, item_ids: Iterable[int]) -> list[tuple[int, list[int]]]:
    """``(user_id, training sequence)`` per row of the ``train`` split (see :func:`enrich_users` for
    ``sequences``): ``history + [target]``, never a validation or test target.

    Raises:
        ValueError: for missing columns, a user twice, or an item id that is not in ``item_ids``.
    """
    train = _train_split(sequences)
    columns = getattr(train, "column_names", None) or (list(train[0]) if len(train) else [])
    missing = [name for name in ("user_id", "history", "target") if name not in columns]
    if missing:
        raise ValueError(f"sequences train split: missing column {', '.join(missing)} (columns: {', '.join(columns)})")
    known = set(item_ids)
    histories, seen = [], set()
    for number, row in enumerate(train.to_list() if hasattr(train, "to_list") else train):
        user = row["user_id"]
        if user in seen:
            raise ValueError(f"sequences train split row {number}: user {user} has a second training row")
        seen.add(user)
        sequence = [*row["history"], row["target"]]
        unknown = [item for item in sequence if item not in known]
        if unknown:
            raise ValueError(f"sequences train split row {number} (user {user}): item {unknown[0]} is not an item")
        histories.append((user, sequence))
    return histories


def _titles_by_id(items) -> dict[int, str]:
    rows = items.to_list() if hasattr(items, "to_list") else list(items)
    if rows and ("item_id" not in rows[0] or "title" not in rows[0]):
        raise ValueError(f"the items need item_id and title columns (columns: {', '.join(rows[0])})")
    return {row["item_id"]: clean_text(row.get("title")) for row in rows}


def enrich_users(
    sequences,
    items,
    generator: Generator,
    signals=None,
    prompt: UserPromptBuilder | None = None,
    max_history: int = DEFAULT_MAX_HISTORY,
    decoding: DecodingSettings = DEFAULT_DECODING,
    retry_decoding: DecodingSettings | None = RETRY,
    cache_dir=None,
    chunk_size: int = 512,
    limit: int | None = None,
    progress: bool = True,
    keep_answers: bool = False,
    report: dict | None = None,
) -> Dataset:
    """The ``user_signals`` table: one row per user of the ``train`` split (see the module docstring for
    which history each signal sees), ``status`` per row, provenance columns.

    ``sequences`` is the ``sequences`` ``DatasetDict`` (its ``train`` is used) or its ``train`` split;
    ``items`` the ``items`` dataset (``item_id``, ``title``). ``prompt`` defaults to a
    :class:`UserPromptBuilder` for ``signals`` and ``max_history``. With ``cache_dir`` every finished
    row is cached there (:class:`~lamar_hf.enrich.pipeline.RowCache`), so a re-run or a killed run
    generates only the rows it lacks. ``limit`` keeps the first users. Users without any titled
    training item are ``invalid`` (``status_detail`` says so) and not sent. A dict ``report`` is filled
    with counts: ``users``, ``prompts`` (distinct), ``from_cache``, ``generated``, ``no_history``.
    """
    builder = prompt or UserPromptBuilder(signals=resolve_user_signals(signals), max_history=max_history)
    names = [spec.name for spec in builder.signals]
    titles = _titles_by_id(items)
    histories = training_histories(sequences, titles)
    if limit is not None:
        histories = histories[:limit]
    features = user_signal_features(names)
    if keep_answers:
        features["answer"] = Value("string")

    shown, keys, work = [], [], {}
    for _, sequence in histories:
        ids, shown_titles = builder.select(sequence, titles)
        shown.append(ids)
        if not ids:
            keys.append(None)
            continue
        key = stable_hash(builder.messages(shown_titles), 24)
        keys.append(key)
        work.setdefault(key, {"prompt_key": key, "titles": shown_titles})
    run_fingerprint = stable_hash({
        "kind": USER_SIGNALS_CONFIG,
        "provenance": generator.provenance(),
        "prompt": builder.to_dict(),
        "decoding": decoding.to_dict(),
        "retry": retry_decoding.to_dict() if retry_decoding else None,
        "lamar_hf": __version__,
        "validation_rules": [RULES_VERSION, USER_RULES_VERSION],
    })
    counts = {"users": len(histories), "prompts": len(work), "from_cache": 0, "generated": 0,
              "no_history": keys.count(None)}
    rows = _run_chunks(list(work.values()), generator, _UserRowJudge(builder), decoding, retry_decoding,
                       run_fingerprint, cache_dir, chunk_size, progress, counts, unit="user", desc="enrich users")
    by_key = {row["prompt_key"]: row for row in rows}
    if report is not None:
        report.update(counts)

    provenance = generator.provenance()
    constant = {"generator": provenance.get("generator"), "generator_revision": provenance.get("generator_revision"),
                "adapter": provenance.get("adapter"), "prompt_version": builder.version,
                "lamar_hf_version": __version__}
    output = {name: [] for name in features}
    for (user, _), ids, key in zip(histories, shown, keys):
        result = by_key.get(key) if key is not None else None
        output["user_id"].append(user)
        for name in names:
            output[name].append(result[name] if result else None)
        output["status"].append(result["status"] if result else "invalid")
        output["status_detail"].append(result["status_detail"] if result else NO_HISTORY)
        output["history_items"].append(ids)
        output["decoding"].append(result["decoding"] if result else None)
        for name, value in constant.items():
            output[name].append(value)
        if keep_answers:
            output["answer"].append(result["answer"] if result else None)
    return Dataset.from_dict(output, features=features)


STAGING_PREFIX = ".user_signals-"


def check_user_signals_overwrite(out_dir, rows: int, overwrite: bool = False) -> None:
    """Refuse (``FileExistsError``) to write ``rows`` rows over a ``user_signals`` config that holds more,
    unless ``overwrite``."""
    existing = Path(out_dir) / USER_SIGNALS_FILE
    if overwrite or not existing.is_file():
        return
    try:
        held = pq.read_metadata(existing).num_rows
    except Exception as error:  # noqa: BLE001 - pyarrow raises several types for an unreadable file
        raise ValueError(f"{existing}: not a readable parquet file ({error}); remove it or pass --overwrite") from None
    if held > rows:
        raise FileExistsError(f"{existing} holds {held:,} rows and this run would write {rows:,} over it; "
                              "pass --overwrite (overwrite=True) to replace it, or write elsewhere")


def write_user_signals(table: Dataset, out_dir, manifest: dict | None = None, overwrite: bool = False) -> Path:
    """Write ``out_dir/user_signals/train-00000-of-00001.parquet`` atomically (the swap of
    :mod:`lamar_hf.staging`); ``manifest`` goes to ``out_dir/lamar_enrich_users.json``.

    Raises ``FileExistsError`` when the existing config holds more rows than ``table`` and not ``overwrite``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / USER_SIGNALS_FILE.parent
    recover_folder(target, STAGING_PREFIX, complete=lambda folder: (folder / USER_SIGNALS_FILE.name).is_file())
    check_user_signals_overwrite(out_dir, len(table), overwrite)
    staging = staging_path(out_dir, STAGING_PREFIX)
    staging.mkdir()
    try:
        table.to_parquet(str(staging / USER_SIGNALS_FILE.name))
        swap_in(staging, target, STAGING_PREFIX)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if manifest is not None:
        path = out_dir / USER_MANIFEST
        partial = path.with_suffix(".json.tmp")
        partial.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        partial.replace(path)
    return out_dir / USER_SIGNALS_FILE


__all__ = [
    "DEFAULT_USER_SIGNALS",
    "USER_EXEMPLARS",
    "USER_SIGNALS_CONFIG",
    "UserExemplar",
    "UserPromptBuilder",
    "check_user_signals_overwrite",
    "enrich_users",
    "find_user_problems",
    "resolve_user_signals",
    "training_histories",
    "user_signal_features",
    "write_user_signals",
]
