"""Reading the LLM's answer back into signals, and deciding whether each signal is usable.

The answer format is one line per signal, ``name: phrase`` (see :func:`format_answer`). The parser
is lenient about decoration a small model adds (bullets, ``**bold**`` labels, quotes, a trailing
full stop) and strict about content: :func:`find_problems` rejects empty phrases, phrases over the
word limit, copies of the title, copies of an exemplar answer and leftovers of the instruction.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Sequence

from .config import SignalSpec

# Bump when the rules of find_problems change: it is part of the cache fingerprint of enrich_items.
RULES_VERSION = 2

_LABEL_LINE = re.compile(r"^[\s\-*#>•\d.)]*\**\s*([A-Za-z][A-Za-z _]{0,30}?)\s*\**\s*[:：]\s*(.*)$")
_WORD = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)


def format_answer(signals: dict, specs: Sequence[SignalSpec]) -> str:
    """The answer text for ``signals``: ``name: phrase`` lines in the order of ``specs``."""
    return "\n".join(f"{spec.name}: {signals[spec.name]}" for spec in specs)


def clean_phrase(text: str) -> str:
    """Strip the decoration a model puts around a phrase (quotes, bold marks, a trailing full stop)."""
    text = " ".join(text.split())
    text = text.strip().strip("*_`").strip()
    if len(text) >= 2 and text[0] in "\"'“‘" and text[-1] in "\"'”’":
        text = text[1:-1].strip()
    return text.rstrip(" .;,").strip()


def parse_answer(text: str | None, specs: Sequence[SignalSpec], last: bool = False) -> dict[str, str | None]:
    """Read ``name: phrase`` lines from a generated answer; a signal that is not there is ``None``.

    Labels are matched case-insensitively (``Scenario``, ``**intent**``, ``- topic``). By default
    the first line for a signal wins; ``last=True`` takes the last one, for chain-of-thought answers
    that mention the labels while reasoning and give the final lines at the end.
    """
    found: dict[str, str | None] = {spec.name: None for spec in specs}
    if not text:
        return found
    for line in text.splitlines():
        match = _LABEL_LINE.match(line)
        if not match:
            continue
        label = match.group(1).strip().lower().replace(" ", "_")
        if label not in found:
            continue
        if found[label] is not None and not last:
            continue
        found[label] = clean_phrase(match.group(2))
    return found


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` (HTML entities decoded, accents kept)."""
    text = unicodedata.normalize("NFKC", html.unescape(text or "")).lower()
    return _WORD.findall(text)


def normalize(text: str) -> str:
    """Words joined by single spaces: equal for phrases that differ only in case and punctuation."""
    return " ".join(words(text))


def _contains_run(haystack: list[str], needle: list[str]) -> bool:
    size = len(needle)
    return any(haystack[start : start + size] == needle for start in range(len(haystack) - size + 1))


def _shares_run(value_words: list[str], title_words: list[str], size: int) -> bool:
    """Whether ``size`` consecutive words of the value appear, in order, in the title."""
    return any(_contains_run(title_words, value_words[start : start + size])
               for start in range(len(value_words) - size + 1))


def _repeats_a_word(value_words: list[str], times: int = 3) -> bool:
    # "10-10-10-10", "bath with a bath with a bath": a small model looping, not a phrase.
    counts: dict[str, int] = {}
    for word in value_words:
        if len(word) > 1:
            counts[word] = counts.get(word, 0) + 1
    return any(count >= times for count in counts.values())


def find_problems(
    signals: dict[str, str | None],
    specs: Sequence[SignalSpec],
    title: str | None = None,
    exemplar_answers: Iterable[str] = (),
    copy_run: int = 4,
) -> dict[str, str]:
    """Why each unusable signal is unusable: ``{name: problem}``, empty when every signal is fine.

    A signal fails when it is missing or empty, longer than its ``max_words``, repeating a word
    three times, the title itself, the
    whole title with words around it, ``copy_run`` or more consecutive words lifted from the title,
    equal to an exemplar answer, a
    template placeholder (``<...>``), or the same phrase as an earlier signal of the item.
    """
    title_words = words(title or "")
    exemplar_set = {normalize(answer) for answer in exemplar_answers}
    problems: dict[str, str] = {}
    seen: dict[str, str] = {}
    for spec in specs:
        value = signals.get(spec.name)
        value_words = words(value or "")
        normalized = " ".join(value_words)
        if value is None:
            problems[spec.name] = "missing"
        elif not value_words:
            problems[spec.name] = "empty"
        elif "<" in value or ">" in value:
            problems[spec.name] = "template placeholder"
        elif len(value_words) > spec.max_words:
            problems[spec.name] = f"{len(value_words)} words, more than {spec.max_words}"
        elif _repeats_a_word(value_words):
            problems[spec.name] = "repeats a word three times"
        elif title_words and (
            value_words == title_words
            or _shares_run(value_words, title_words, copy_run)
            or (len(title_words) >= 3 and _contains_run(value_words, title_words))
        ):
            problems[spec.name] = "copy of the title"
        elif normalized in exemplar_set:
            problems[spec.name] = "copy of an exemplar answer"
        elif normalized in seen:
            problems[spec.name] = f"same as {seen[normalized]}"
        if spec.name not in problems:
            seen[normalized] = spec.name
    return problems


def describe_problems(problems: dict[str, str]) -> str:
    """One line for a ``status_detail`` column: ``intent: copy of the title; topic: missing``."""
    return "; ".join(f"{name}: {problem}" for name, problem in problems.items())
