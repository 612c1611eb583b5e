"""Prompts: item metadata rendered under control, few-shot or zero-shot chat conversations.

A :class:`PromptBuilder` turns one item into a chat conversation (a list of ``{"role", "content"}``
messages). Few-shot prompts put the exemplars first as earlier user/assistant turns, so every item's
prompt shares the same long prefix (the generator computes it once). The builder serialises to a
plain dict (``to_dict`` / ``from_dict``, ``save`` / ``load``) whose hash is the prompt version.
"""

from __future__ import annotations

import html
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .config import DEFAULT_SIGNALS, MetadataView, SignalSpec, resolve_signals, stable_hash
from .parsing import format_answer

PROMPT_FORMAT = "lamar-prompt"
PROMPT_FORMAT_VERSION = 1
PROMPT_FILE = "lamar_prompt.json"

DEFAULT_SYSTEM = (
    "You describe products of an online shop with short phrases in your own words. "
    "For the product the user gives, answer with exactly these lines:\n{lines}\n"
    "Infer what the title does not say. Do not repeat the title."
)
DEFAULT_COT_TRIGGER = (
    "Let's think step by step about who uses this product, when, and why. "
    "Then give the final answer lines."
)


def clean_text(value) -> str:
    """Metadata text as a prompt shows it: HTML entities decoded, control characters and runs of spaces removed."""
    if value is None:
        return ""
    text = html.unescape(str(value))
    text = "".join(" " if unicodedata.category(char)[0] == "C" else char for char in text)
    return " ".join(text.split())


def cut_words(text: str, limit: int) -> str:
    parts = text.split()
    return text if len(parts) <= limit else " ".join(parts[:limit]) + " ..."


def render_metadata(item: dict, view: MetadataView = MetadataView()) -> str:
    """The metadata block of one item, one ``Field: value`` line per non-empty field of ``view``."""
    lines = []
    for name in view.fields:
        value = item.get(name)
        if name == "categories":
            path = [clean_text(level) for level in (value or []) if clean_text(level)]
            if view.skip_root_category and len(path) > 1:
                path = path[1:]
            if view.category_depth is not None:
                path = path[: view.category_depth]
            if path:
                lines.append("Category: " + " > ".join(path))
        elif name == "price":
            if value is not None and value == value and float(value) > 0:  # value == value: not NaN
                lines.append(f"Price: ${float(value):.2f}")
        else:
            text = clean_text(value)
            if not text:
                continue
            if name == "title":
                text = cut_words(text, view.max_title_words)
            elif name == "description":
                text = cut_words(text, view.max_description_words)
            lines.append(f"{name.capitalize()}: {text}")
    return "\n".join(lines)


def has_metadata(item: dict, view: MetadataView = MetadataView()) -> bool:
    """Whether ``view`` shows anything at all for ``item`` (an item with nothing is not sent to the LLM)."""
    return bool(render_metadata(item, view))


@dataclass
class Exemplar:
    """A worked example for few-shot prompts: an item's metadata and the signals written for it.

    ``rationale`` is the chain of thought that produced the signals (Auto-CoT); it is kept for
    inspection and shown in prompts only when the builder asks for it.
    """

    item: dict
    signals: dict
    rationale: str | None = None
    item_id: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Exemplar":
        missing = [key for key in ("item", "signals") if key not in data]
        if missing:
            raise ValueError(f"exemplar is missing {missing}: {str(data)[:200]}")
        return cls(item=dict(data["item"]), signals=dict(data["signals"]), rationale=data.get("rationale"),
                   item_id=data.get("item_id"))


@dataclass
class PromptBuilder:
    """Builds the chat conversation that asks an LLM for the signals of one item.

    With ``exemplars`` the prompt is few-shot (system message, then one user/assistant turn per
    exemplar, then the item); without, it is zero-shot (system message and the item). ``system``
    is a template whose ``{lines}`` is replaced by one ``name: <instruction; at most N words>``
    line per signal.
    """

    signals: tuple[SignalSpec, ...] = DEFAULT_SIGNALS
    metadata: MetadataView = field(default_factory=MetadataView)
    exemplars: tuple[Exemplar, ...] = ()
    system: str = DEFAULT_SYSTEM
    cot_trigger: str = DEFAULT_COT_TRIGGER
    show_rationale: bool = False

    def __post_init__(self):
        self.signals = resolve_signals(self.signals)
        self.exemplars = tuple(self.exemplars)
        names = {spec.name for spec in self.signals}
        for number, exemplar in enumerate(self.exemplars):
            missing = names - set(exemplar.signals)
            if missing:
                raise ValueError(f"exemplar {number} (item {exemplar.item_id}) has no {sorted(missing)}")

    # -- the conversation ---------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return "few-shot" if self.exemplars else "zero-shot"

    def system_message(self) -> str:
        lines = "\n".join(
            f"{spec.name}: <{spec.instruction}; at most {spec.max_words} words>" for spec in self.signals
        )
        return self.system.format(lines=lines)

    def answer(self, signals: dict) -> str:
        """The assistant's answer for ``signals``, exactly as the parser reads it."""
        return format_answer(signals, self.signals)

    def messages(self, item: dict) -> list[dict]:
        """The chat conversation for ``item`` (few-shot or zero-shot), ending with the user turn."""
        conversation = [{"role": "system", "content": self.system_message()}]
        for exemplar in self.exemplars:
            answer = self.answer(exemplar.signals)
            if self.show_rationale and exemplar.rationale:
                answer = f"{exemplar.rationale.strip()}\n{answer}"
            conversation.append({"role": "user", "content": render_metadata(exemplar.item, self.metadata)})
            conversation.append({"role": "assistant", "content": answer})
        conversation.append({"role": "user", "content": render_metadata(item, self.metadata)})
        return conversation

    def cot_messages(self, item: dict) -> list[dict]:
        """A zero-shot chain-of-thought conversation for ``item`` (used to build exemplars)."""
        metadata = render_metadata(item, self.metadata)
        return [
            {"role": "system", "content": self.system_message()},
            {"role": "user", "content": f"{metadata}\n\n{self.cot_trigger}"},
        ]

    def exemplar_answers(self) -> list[str]:
        """Every exemplar phrase: a generated signal equal to one of them is a copy, not an answer."""
        return [str(exemplar.signals[spec.name]) for exemplar in self.exemplars for spec in self.signals]

    # -- rendering with a tokenizer's chat template ------------------------------------------------
    def render(self, item: dict, tokenizer) -> str:
        """The prompt text for ``item`` through ``tokenizer``'s chat template, ready for the assistant turn."""
        return tokenizer.apply_chat_template(self.messages(item), tokenize=False, add_generation_prompt=True)

    def training_example(self, item: dict, signals: dict, tokenizer) -> dict:
        """``{"prompt", "completion"}`` for supervised tuning on exactly the format :meth:`render` and the parser use.

        ``prompt`` is :meth:`render` of the item; ``completion`` is the answer followed by the chat
        template's end-of-turn text (``<|im_end|>\\n`` for ChatML), so a tuned model learns to stop.
        """
        prompt = self.render(item, tokenizer)
        conversation = self.messages(item) + [{"role": "assistant", "content": self.answer(signals)}]
        full = tokenizer.apply_chat_template(conversation, tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template renders the prompt differently once the answer is added")
        return {"prompt": prompt, "completion": full[len(prompt):]}

    # -- variants -------------------------------------------------------------------------------
    def zero_shot(self) -> "PromptBuilder":
        """The same builder without exemplars: a short prompt for a tuned model."""
        return PromptBuilder(self.signals, self.metadata, (), self.system, self.cot_trigger, self.show_rationale)

    def with_exemplars(self, exemplars: Sequence[Exemplar]) -> "PromptBuilder":
        return PromptBuilder(self.signals, self.metadata, tuple(exemplars), self.system, self.cot_trigger,
                             self.show_rationale)

    # -- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": PROMPT_FORMAT,
            "format_version": PROMPT_FORMAT_VERSION,
            "signals": [asdict(spec) for spec in self.signals],
            "metadata": {**asdict(self.metadata), "fields": list(self.metadata.fields)},
            "exemplars": [exemplar.to_dict() for exemplar in self.exemplars],
            "system": self.system,
            "cot_trigger": self.cot_trigger,
            "show_rationale": self.show_rationale,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "PromptBuilder":
        if data.get("format") != PROMPT_FORMAT:
            raise ValueError(f"not a lamar prompt (format {data.get('format')!r}, expected {PROMPT_FORMAT!r})")
        if data.get("format_version", 0) > PROMPT_FORMAT_VERSION:
            raise ValueError(f"prompt format_version {data['format_version']} is newer than this lamar-hf reads")
        return cls(
            signals=tuple(SignalSpec(**spec) for spec in data["signals"]),
            metadata=MetadataView(**{**data.get("metadata", {}), "fields": tuple(data.get("metadata", {}).get(
                "fields", MetadataView().fields))}),
            exemplars=tuple(Exemplar.from_dict(exemplar) for exemplar in data.get("exemplars", [])),
            system=data.get("system", DEFAULT_SYSTEM),
            cot_trigger=data.get("cot_trigger", DEFAULT_COT_TRIGGER),
            show_rationale=data.get("show_rationale", False),
        )

    def save(self, path) -> Path:
        """Write the builder as JSON (a folder gets ``lamar_prompt.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / PROMPT_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path) -> "PromptBuilder":
        path = Path(path)
        if path.is_dir():
            path = path / PROMPT_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        return cls.from_dict(data)

    @property
    def version(self) -> str:
        """A hash of everything that shapes the prompt: equal versions render equal prompts."""
        return stable_hash(self.to_dict(), 12)
