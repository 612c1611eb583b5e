"""What to generate and how: signal specs, metadata control and decoding settings.

These small dataclasses say *what* the enrichment does; :mod:`lamar_hf.enrich.generator` and
:mod:`lamar_hf.enrich.pipeline` do it. Every one of them turns into a plain dict (``to_dict``) so
that it can be hashed into a prompt version or a cache fingerprint and stored as provenance.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass, fields, replace

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class SignalSpec:
    """One semantic signal: a short phrase the LLM writes for every item.

    ``name`` is the column name and the answer label (``scenario: ...``), ``instruction`` tells the
    model what the phrase is, ``max_words`` bounds its length (longer answers fail validation).
    """

    name: str
    instruction: str
    max_words: int = 10

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise ValueError(f"signal name {self.name!r} must be lower-case letters, digits and '_'")
        if self.max_words < 1:
            raise ValueError(f"signal {self.name!r}: max_words must be at least 1, got {self.max_words}")
        if not self.instruction.strip():
            raise ValueError(f"signal {self.name!r}: the instruction is empty")


# Word limits follow the hand-written exemplars in training/data (scenario 11, intent 10, topic 7).
DEFAULT_SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec("scenario", "a concrete situation in which someone uses the item (who, when, where)", 11),
    SignalSpec("intent", "what the buyer wants to achieve with it, as a verb phrase", 10),
    SignalSpec("topic", "a short topical label of what the item is", 7),
)


def resolve_signals(names_or_specs=None) -> tuple[SignalSpec, ...]:
    """Turn ``None`` (the defaults), names of default signals, or :class:`SignalSpec` objects into specs.

    Raises ``ValueError`` for an unknown name or a name given twice.
    """
    if names_or_specs is None:
        return DEFAULT_SIGNALS
    if isinstance(names_or_specs, str):
        names_or_specs = [part.strip() for part in names_or_specs.split(",") if part.strip()]
    defaults = {spec.name: spec for spec in DEFAULT_SIGNALS}
    specs = []
    for entry in names_or_specs:
        if isinstance(entry, SignalSpec):
            specs.append(entry)
        elif isinstance(entry, dict):
            specs.append(SignalSpec(**entry))
        elif entry in defaults:
            specs.append(defaults[entry])
        else:
            raise ValueError(f"unknown signal {entry!r}; the defaults are {', '.join(defaults)} (or pass a SignalSpec)")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"signals must be a non-empty list of distinct names, got {names}")
    return tuple(specs)


@dataclass(frozen=True)
class MetadataView:
    """Which item metadata a prompt shows, and how much of it.

    ``fields`` are rendered in this order (missing or empty values are left out);
    ``category_depth`` keeps the first levels of the category path (``None``: all);
    ``skip_root_category`` drops the first level when it is the same for every item (``Beauty``);
    long titles and descriptions are cut to ``max_title_words`` / ``max_description_words``.
    """

    fields: tuple[str, ...] = ("title", "brand", "categories", "price", "description")
    category_depth: int | None = None
    skip_root_category: bool = True
    max_title_words: int = 30
    max_description_words: int = 60

    def __post_init__(self):
        known = {"title", "brand", "categories", "price", "description"}
        unknown = [name for name in self.fields if name not in known]
        if unknown:
            raise ValueError(f"unknown metadata field(s) {unknown}; choose from {sorted(known)}")
        object.__setattr__(self, "fields", tuple(self.fields))


@dataclass(frozen=True)
class DecodingSettings:
    """How the generator decodes one answer.

    Greedy by default (``do_sample=False``). ``repetition_penalty`` > 1 discourages tokens that are
    already in the answer so far (tokens of the system message are exempt, so the answer format
    is not penalised). ``seed`` makes sampling
    reproducible per row. ``clip_words`` ends each answer line at its signal's word limit (at a
    word boundary) instead of letting it run on.
    """

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0
    clip_words: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DecodingSettings":
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def with_(self, **changes) -> "DecodingSettings":
        return replace(self, **changes)


GREEDY = DecodingSettings()
# The first attempt: greedy, with a mild repetition penalty (a 135M model loops and repeats the
# scenario as the intent without it) and lines ended at their word limit.
DEFAULT_DECODING = DecodingSettings(repetition_penalty=1.2, clip_words=True)
# A failed row is retried once with seeded sampling and a stronger penalty: a different answer, still reproducible.
RETRY = DecodingSettings(do_sample=True, temperature=0.7, top_p=0.9, repetition_penalty=1.3, seed=1234,
                         clip_words=True)


@dataclass(frozen=True)
class RetryPolicy:
    """How a generator retries a transient failure: HTTP 429 / 5xx, a timeout, a lost connection.

    At most ``max_attempts`` requests per answer, waiting ``base_delay * 2**n`` seconds (at most
    ``max_delay``, with jitter) between them, or the server's ``Retry-After`` when it says longer.
    No request starts after ``max_seconds`` since the first one; a wait that would pass that
    bound gives up at once. An answer that still fails is *unavailable*: it is never cached, and
    the next run asks again.
    """

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_seconds: float = 300.0

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if min(self.base_delay, self.max_delay, self.max_seconds) < 0:
            raise ValueError(f"retry delays and bounds must not be negative: {self}")

    def wait(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1, 2, ...)."""
        backoff = min(self.max_delay, self.base_delay * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)
        return max(backoff, retry_after or 0.0)


DEFAULT_RETRY_POLICY = RetryPolicy()


def stable_hash(data, length: int = 16) -> str:
    """A short SHA-256 of a JSON-able value, stable across processes and Python versions."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
