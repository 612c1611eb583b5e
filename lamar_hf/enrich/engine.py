"""The batched decoding loop behind :class:`~lamar_hf.enrich.generator.TransformersGenerator`.

Why not one ``model.generate`` call per batch: every few-shot prompt starts with the same long
prefix (system message and exemplars), and on a CPU most of the work is that prefix. This loop

- computes the prefix's key/value cache once (batch of 1) and runs only each item's own tokens;
- lets every row attend to that prefix without copying it per row (:func:`shared_prefix_attention`,
  plugged in through transformers' attention interface; models without one get a per-row copy);
- sorts rows by length and left-pads them, drops rows from the batch as soon as they finish, and
  stops when every row has finished;
- optionally writes the answer's line labels itself (:class:`AnswerFormat`), so a small model
  always answers in the format and stops after the last line.

Why it stays, and only for Llama: ``benchmarks/bench_enrich.py`` (32 few-shot Beauty prompts of 520
tokens, SmolLM2-135M float32, greedy, 64 new tokens, batch 32; a 2-core AMD EPYC shared with other
work, so the figures are rough) gave the engine 0.553 items/s, transformers' batched ``generate``
with left padding 0.117 items/s (4.7x slower) and continuous batching ``generate_batch`` 0.062
items/s (8 items; 8.9x slower), every answer identical to the engine's token for token (32/32, 8/8).
With the enrichment's own decoding (repetition penalty, labels, clipped lines) the engine reached
0.437 items/s against ``generate``'s 0.133 (3.3x), again 32/32 identical. The gain is the shared
prefix: on the ~100-token zero-shot prompt of a tuned adapter (``--zero-shot``) the engine was only
1.23x ``generate`` (0.67 vs 0.544 items/s, 32/32 identical). In bfloat16 the paths can differ where
two logits tie exactly. Its attention implements plain causal softmax attention
only, so :func:`engine_support` admits only the architectures it is tested on
(:data:`SUPPORTED_MODEL_TYPES`) and refuses sliding windows, softcapping and other attention
variants; every other model is decoded by :class:`LibraryDecoder`, ``model.generate`` with the
engine's token rules as a logits processor (:func:`make_decoder`).
"""
from __future__ import annotations

import inspect
import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .config import DecodingSettings

logger = logging.getLogger(__name__)

# Whether ``decoder='auto'`` takes the engine for the architectures it supports (see the module docstring).
ENGINE_BY_DEFAULT = True


@dataclass
class DecodeStats:
    """Token counts of the work done, for throughput figures."""

    prompts: int = 0
    prompt_tokens: int = 0  # every prompt's full length, as if it were run on its own
    computed_prompt_tokens: int = 0  # what actually went through the model (the shared prefix once)
    generated_tokens: int = 0
    forward_calls: int = 0
    prefix_builds: int = 0

    def add(self, other: "DecodeStats") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class PrefixCache:
    """The key/value cache of a prompt prefix shared by many prompts, computed once (batch of 1)."""

    token_ids: tuple[int, ...]
    layers: list[tuple[torch.Tensor, torch.Tensor]] = field(repr=False)


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all sequences."""
    if not sequences:
        return 0
    first = sequences[0]
    length = min(len(sequence) for sequence in sequences)
    for sequence in sequences[1:]:
        index = 0
        while index < length and sequence[index] == first[index]:
            index += 1
        length = index
        if length == 0:
            break
    return length


def _cache_argument(model) -> str:
    # transformers 5.x renamed `past_key_values` to `cache`; accept either.
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _new_cache(model, layers=None):
    from transformers import DynamicCache

    if layers is None:
        return DynamicCache(config=model.config)
    return DynamicCache(ddp_cache_data=layers, config=model.config)


def _cache_layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


PREFIX_ATTENTION = "lamar_shared_prefix"


def _attend(query, key, value, mask, scaling: float):
    """Softmax attention that also returns the log-sum-exp of the scores (to merge two key sets)."""
    if query.device.type == "cpu":
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, 0.0, False, attn_mask=mask, scale=scaling)
    return _attend_explicit(query, key, value, mask, scaling)


def _attend_explicit(query, key, value, mask, scaling: float):
    """:func:`_attend` with the scores materialised (GPUs: memory is plentiful, the kernel is generic)."""
    scores = torch.matmul(query, key.transpose(-1, -2)).float() * scaling
    if mask is not None:
        scores = scores + mask
    log_sum = scores.logsumexp(dim=-1)
    return torch.matmul((scores - log_sum[..., None]).exp().to(value.dtype), value), log_sum


def shared_prefix_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                            lamar_prefix=None, lamar_mask=None, **kwargs):
    """Attention over a shared prefix (stored once, batch 1) plus each row's own keys and values.

    Without ``lamar_prefix`` this is plain SDPA. With it, ``key``/``value`` hold only each row's
    own tokens, ``lamar_prefix[layer]`` the prefix's keys and values of shape (1, kv_heads, P, dim),
    and ``lamar_mask`` the additive mask over the row's own tokens. The prefix is never copied per
    row: all rows' queries attend to it as one long query; the two partial attentions are then
    merged with their log-sum-exps (as flash attention merges blocks).
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if lamar_prefix is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    prefix_keys, prefix_values = lamar_prefix[module.layer_idx]
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    scaling = dim**-0.5 if scaling is None else scaling
    # Query heads are grouped by the key/value head they share (as repeat_kv lays them out).
    grouped = query.reshape(batch, kv_heads, groups * length, dim)
    folded = grouped.transpose(0, 1).reshape(1, kv_heads, batch * groups * length, dim)
    prefix_out, prefix_lse = _attend(folded, prefix_keys, prefix_values, None, scaling)
    prefix_out = prefix_out.reshape(kv_heads, batch, groups * length, dim).transpose(0, 1)
    prefix_lse = prefix_lse.reshape(kv_heads, batch, groups * length).transpose(0, 1)
    own_mask = lamar_mask[:, :, None].expand(batch, 1, groups, length, lamar_mask.shape[-1])
    own_out, own_lse = _attend(grouped, key, value, own_mask.reshape(batch, 1, groups * length, -1), scaling)
    total = torch.logaddexp(prefix_lse, own_lse)
    output = (prefix_out.float() * (prefix_lse - total).exp()[..., None]
              + own_out.float() * (own_lse - total).exp()[..., None]).to(query.dtype)
    output = output.reshape(batch, heads, length, dim).transpose(1, 2).contiguous()
    return output, None


def _register_prefix_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PREFIX_ATTENTION, shared_prefix_attention)
    AttentionMaskInterface.register(PREFIX_ATTENTION, sdpa_mask)


def _additive_mask(own_mask: torch.Tensor, length: int, dtype) -> torch.Tensor:
    """(batch, 1, length, keys) mask over each row's own keys: causal for the last ``length`` keys, no padding."""
    keys = own_mask.shape[-1]
    allowed = own_mask[:, None, None, :].bool().expand(-1, 1, length, keys)
    query_index = torch.arange(keys - length, keys, device=own_mask.device)[:, None]
    causal = torch.arange(keys, device=own_mask.device)[None, :] <= query_index
    # A padding query may see only itself: no row is fully masked (that would give NaNs).
    allowed = (allowed & causal) | (torch.arange(keys, device=own_mask.device)[None, :] == query_index)
    return torch.zeros(allowed.shape, dtype=dtype, device=own_mask.device).masked_fill(~allowed,
                                                                                         torch.finfo(dtype).min)


def _row_generator(seed: int, prompt_ids: Sequence[int], device) -> torch.Generator:
    # A per-row seed from the prompt itself: the same row samples the same answer in any batch.
    row_seed = (seed * 1_000_003 + zlib.crc32(bytes(str(list(prompt_ids)), "ascii"))) % (2**63)
    generator = torch.Generator(device=device)
    generator.manual_seed(row_seed)
    return generator


SAMPLING_TOP_K = 64


def _choose_tokens(logits, decoding: DecodingSettings, penalised, generators) -> torch.Tensor:
    """Pick the next token of every active row (greedy, or seeded sampling)."""
    if decoding.repetition_penalty != 1.0 and penalised is not None:
        factor = decoding.repetition_penalty
        logits = torch.where(penalised, torch.where(logits < 0, logits * factor, logits / factor), logits)
    if not decoding.do_sample:
        return logits.argmax(dim=-1)
    # Sample among the SAMPLING_TOP_K most likely tokens (sorting the whole vocabulary every step is slow).
    top_logits, top_ids = logits.topk(min(SAMPLING_TOP_K, logits.shape[-1]), dim=-1)
    probs = torch.softmax(top_logits / max(decoding.temperature, 1e-5), dim=-1)
    if decoding.top_p < 1.0:
        cumulative = probs.cumsum(dim=-1)
        probs = probs.masked_fill(cumulative - probs > decoding.top_p, 0.0)  # the smallest set reaching top_p
    picks = torch.stack([torch.multinomial(probs[row], 1, generator=generators[row])[0] for row in range(len(probs))])
    return top_ids.gather(-1, picks[:, None]).squeeze(-1)


# The architectures the engine is tested on (SmolLM2 and the tiny Llamas of the tests). Its shared-prefix
# attention and its own masks implement plain causal softmax attention only; every other model is decoded
# by transformers' own ``generate`` (:class:`LibraryDecoder`).
SUPPORTED_MODEL_TYPES = frozenset({"llama"})
# Config fields of attention variants the engine does not implement; any one set refuses the model.
UNSUPPORTED_ATTENTION_FIELDS = ("sliding_window", "use_sliding_window", "attention_chunk_size",
                                "attn_logit_softcapping", "final_logit_softcapping")


class UnsupportedModelError(ValueError):
    """The decoding engine was asked to run a model it would decode wrongly."""


def engine_support(config) -> str | None:
    """Why :class:`DecodingEngine` cannot decode models of ``config`` exactly, or ``None`` if it can."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model type {model_type!r} is not one it is tested on ({', '.join(sorted(SUPPORTED_MODEL_TYPES))})"
    for name in UNSUPPORTED_ATTENTION_FIELDS:
        if getattr(config, name, None):
            return f"its attention has {name}={getattr(config, name)!r}, which the engine does not implement"
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    if layer_types != {"full_attention"}:
        return f"its layers use {sorted(layer_types)} attention; the engine implements full attention only"
    return None


class DecodingEngine:
    """Greedy or sampled decoding of many prompts at once with a shared-prefix cache.

    ``model`` is a causal LM of transformers whose architecture :func:`engine_support` accepts
    (others raise :class:`UnsupportedModelError`). ``eos_ids`` end a row; ``pad_id`` fills left padding.
    """

    def __init__(self, model, eos_ids: Sequence[int], pad_id: int, batch_size: int = 32,
                 min_prefix: int = 32, use_prefix_cache: bool = True):
        reason = engine_support(model.config)
        if reason is not None:
            raise UnsupportedModelError(
                f"lamar's decoding engine does not support {type(model).__name__}: {reason}; decode it with "
                "transformers' generate instead (TransformersGenerator(..., decoder='transformers'))")
        self.model = model
        self.eos_ids = sorted(set(int(token) for token in eos_ids))
        self.pad_id = int(pad_id)
        self.batch_size = batch_size
        self.min_prefix = min_prefix
        self.use_prefix_cache = use_prefix_cache
        self.cache_argument = _cache_argument(model)
        self.prefix: PrefixCache | None = None
        self.stats = DecodeStats()
        # Attend to the shared prefix without copying it per row, where the model lets us plug in
        # an attention function; otherwise the prefix cache is copied for every row of a batch.
        self.shared_attention = False
        if use_prefix_cache:
            try:
                _register_prefix_attention()
                model.set_attn_implementation(PREFIX_ATTENTION)
                self.shared_attention = True
            except (ValueError, AttributeError, ImportError, TypeError):
                self.shared_attention = False

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _forward(self, input_ids, attention_mask, position_ids, cache, stats: DecodeStats, prefix=None):
        stats.forward_calls += 1
        extra = {}
        if prefix is not None and self.shared_attention:
            dtype = prefix.layers[0][0].dtype
            extra = {"lamar_prefix": prefix.layers,
                     "lamar_mask": _additive_mask(attention_mask, input_ids.shape[1], dtype)}
        output = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_argument: cache},
            **extra,
        )
        return output.logits[:, -1, :].float()

    def _prefix_cache(self, token_ids: tuple[int, ...], stats: DecodeStats) -> PrefixCache:
        if self.prefix is not None and self.prefix.token_ids == token_ids:
            return self.prefix
        cache = _new_cache(self.model)
        ids = torch.tensor([token_ids], device=self.device)
        positions = torch.arange(len(token_ids), device=self.device)[None]
        self._forward(ids, torch.ones_like(ids), positions, cache, stats)
        stats.computed_prompt_tokens += len(token_ids)
        stats.prefix_builds += 1
        self.prefix = PrefixCache(token_ids, _cache_layers(cache))
        return self.prefix

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        decoding: DecodingSettings,
        exempt_ids: Sequence[int] = (),
        answer_format: AnswerFormat | None = None,
        progress=None,
    ) -> list[list[int]]:
        """Generate the answer tokens (without the end-of-sequence token) for each prompt.

        The repetition penalty applies to each row's answer so far, except ``exempt_ids`` (the
        answer format's own tokens).
        ``answer_format`` makes the engine write the answer's line labels itself (see
        :class:`AnswerFormat`). ``progress`` (a tqdm bar) is advanced by one per finished prompt.
        """
        prompts = [list(prompt) for prompt in prompts]
        if any(not prompt for prompt in prompts):
            raise ValueError("every prompt needs at least one token")
        stats = DecodeStats(prompts=len(prompts), prompt_tokens=sum(len(prompt) for prompt in prompts))
        prefix_length = 0
        if self.use_prefix_cache and len(prompts) > 1:
            # Keep at least one own token per prompt: its logits start the answer.
            prefix_length = min(common_prefix_length(prompts), min(len(prompt) for prompt in prompts) - 1)
        elif self.use_prefix_cache and self.prefix is not None:
            # A single prompt (a retry) still reuses the prefix computed for its batch.
            shared = common_prefix_length([prompts[0], self.prefix.token_ids])
            if shared == len(self.prefix.token_ids) and shared < len(prompts[0]):
                prefix_length = shared
        if prefix_length < self.min_prefix:
            prefix_length = 0
        prefix = self._prefix_cache(tuple(prompts[0][:prefix_length]), stats) if prefix_length else None

        order = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
        answers: list[list[int] | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch_answers = self._generate_batch(
                [prompts[row] for row in rows],
                prefix,
                decoding,
                exempt_ids,
                answer_format,
                stats,
            )
            for row, answer in zip(rows, batch_answers):
                answers[row] = answer
            if progress is not None:
                progress.update(len(rows))
        self.stats.add(stats)
        return answers

    def _start_cache(self, prompts, prefix: PrefixCache | None, stats: DecodeStats):
        """Run the prompts' own tokens (after the shared prefix); returns the cache, mask, next positions and logits."""
        device = self.device
        prefix_length = len(prefix.token_ids) if prefix else 0
        suffixes = [prompt[prefix_length:] for prompt in prompts]
        batch, width = len(suffixes), max(len(suffix) for suffix in suffixes)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        own_mask = torch.zeros((batch, width), dtype=torch.long)
        for row, suffix in enumerate(suffixes):
            input_ids[row, width - len(suffix):] = torch.tensor(suffix)
            own_mask[row, width - len(suffix):] = 1
        input_ids, own_mask = input_ids.to(device), own_mask.to(device)
        positions = (prefix_length + own_mask.cumsum(-1) - 1).clamp(min=prefix_length)
        if prefix is not None and not self.shared_attention:
            # The cache copies these views into one tensor per layer for the batch.
            cache = _new_cache(self.model, [(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1))
                                            for keys, values in prefix.layers])
            attention_mask = torch.cat([torch.ones((batch, prefix_length), dtype=torch.long, device=device),
                                        own_mask], dim=-1)
        else:
            cache = _new_cache(self.model)  # with shared attention it holds only the rows' own tokens
            attention_mask = own_mask
        stats.computed_prompt_tokens += int(own_mask.sum())
        logits = self._forward(input_ids, attention_mask, positions, cache, stats, prefix)
        return cache, attention_mask, positions[:, -1] + 1, logits

    def _generate_batch(self, prompts, prefix, decoding, exempt_ids, answer_format, stats):
        device = self.device
        batch = len(prompts)
        cache, attention_mask, next_position, logits = self._start_cache(prompts, prefix, stats)
        vocabulary = logits.shape[-1]

        penalised = exempt_mask = None
        if decoding.repetition_penalty != 1.0:
            penalised = torch.zeros((batch, vocabulary), dtype=torch.bool, device=device)
            exempt_mask = torch.zeros(vocabulary, dtype=torch.bool, device=device)
            if exempt_ids:
                exempt_mask[torch.tensor(sorted(set(exempt_ids)), device=device)] = True
        generators = ([_row_generator(decoding.seed, prompt, device) for prompt in prompts]
                      if decoding.do_sample else None)

        eos = set(self.eos_ids)
        rows = [_RowState(answer_format) for _ in range(batch)]
        active = list(range(batch))  # batch row of each row still in the cache
        for _ in range(decoding.max_new_tokens):
            proposed = _choose_tokens(logits, decoding, penalised,
                                      [generators[row] for row in active] if generators else None).tolist()
            tokens, keep = [], []
            for position, (row, token) in enumerate(zip(active, proposed)):
                token = rows[row].next_token(token, eos)
                if token is None:
                    continue
                tokens.append(token)
                keep.append(position)
            stats.generated_tokens += len(tokens)
            if not keep:
                break
            if len(keep) < len(active):
                kept = torch.tensor(keep, device=device)
                cache.batch_select_indices(kept)
                attention_mask, next_position = attention_mask[kept], next_position[kept]
                if penalised is not None:
                    penalised = penalised[kept]
                active = [active[position] for position in keep]
            token_tensor = torch.tensor(tokens, device=device)
            if penalised is not None:
                penalised[torch.arange(len(tokens), device=device), token_tensor] = True
                penalised &= ~exempt_mask
            attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=-1)
            logits = self._forward(token_tensor[:, None], attention_mask, next_position[:, None], cache, stats,
                                   prefix)
            next_position = next_position + 1
        return [row.output for row in rows]


@dataclass
class AnswerFormat:
    """An answer made of labelled lines (``scenario: ...``) whose labels the engine writes itself.

    The model only writes each line's phrase: after the label's tokens are fed, the model's tokens
    are taken until one holds a line break (or is an end-of-sequence token, or the line reaches
    ``max_line_tokens``); then the next label follows, and after the last line the row is done.
    A small model thus always answers in the format, and never rambles on after the last line.
    With ``word_limits`` (and ``count_words``, which counts the words of a line's tokens), a line
    also ends where its next token would start a word beyond the limit: at a word boundary.
    """

    label_ids: list[list[int]]  # the tokens of each line's label, e.g. "scenario:"
    newline_id: int
    breaks_line: frozenset[int]  # the tokens whose text holds a line break
    max_line_tokens: int = 24
    word_limits: list[int] | None = None
    count_words: Callable[[list[int]], int] | None = None


class _RowState:
    """Where one row is in its answer: the forced label tokens still to feed, the current line."""

    def __init__(self, answer_format: AnswerFormat | None):
        self.format = answer_format
        self.output: list[int] = []
        self.line = 0
        self.line_ids: list[int] = []
        self.forced = list(answer_format.label_ids[0]) if answer_format else []
        self.done = False

    def next_token(self, proposed: int, eos: set[int]) -> int | None:
        """The token this row feeds next (a forced label token or the model's), or ``None`` when done."""
        if self.done:
            return None
        if self.forced:
            token = self.forced.pop(0)
            self.output.append(token)
            return token
        answer_format = self.format
        if answer_format is None:
            if proposed in eos:
                self.done = True
                return None
            self.output.append(proposed)
            return proposed
        breaks = proposed in answer_format.breaks_line
        line_ends = proposed in eos or breaks or len(self.line_ids) >= answer_format.max_line_tokens
        if not line_ends and answer_format.word_limits is not None:
            limit = answer_format.word_limits[self.line]
            line_ends = answer_format.count_words(self.line_ids + [proposed]) > limit
            breaks = False
        if not line_ends:
            self.line_ids.append(proposed)
            self.output.append(proposed)
            return proposed
        if self.line == len(answer_format.label_ids) - 1:
            self.done = True
            return None
        self.line += 1
        self.line_ids = []
        token = proposed if breaks else answer_format.newline_id
        self.output.append(token)
        self.forced = list(answer_format.label_ids[self.line])
        return token


class _EngineRules:
    """A ``LogitsProcessor`` that makes ``model.generate`` pick tokens by the engine's rules.

    Each step it chooses every row's token as the engine does (:func:`_choose_tokens`: repetition
    penalty on the answer so far, greedy or seeded sampling) and passes it through the row's
    :class:`_RowState` (answer format, end of row); the scores it returns allow only that token
    (an end-of-sequence token once the row is done), so greedy ``generate`` takes it.
    """

    def __init__(self, rows: list["_RowState"], decoding: DecodingSettings, eos_ids: Sequence[int],
                 exempt_ids: Sequence[int], generators, vocabulary: int, device):
        self.rows, self.decoding, self.generators = rows, decoding, generators
        self.eos, self.stop_id = set(eos_ids), int(eos_ids[0])
        self.penalised = self.exempt = None
        if decoding.repetition_penalty != 1.0:
            self.penalised = torch.zeros((len(rows), vocabulary), dtype=torch.bool, device=device)
            self.exempt = torch.zeros(vocabulary, dtype=torch.bool, device=device)
            if exempt_ids:
                self.exempt[torch.tensor(sorted(set(exempt_ids)), device=device)] = True

    def __call__(self, input_ids, scores):
        proposed = _choose_tokens(scores.float(), self.decoding, self.penalised, self.generators).tolist()
        chosen = []
        for row, token in enumerate(proposed):
            token = self.rows[row].next_token(token, self.eos)
            chosen.append(self.stop_id if token is None else token)
            if token is not None and self.penalised is not None:
                self.penalised[row, token] = True
        if self.penalised is not None:
            self.penalised &= ~self.exempt
        forced = torch.full_like(scores, float("-inf"))
        forced[torch.arange(len(chosen), device=scores.device), torch.tensor(chosen, device=scores.device)] = 0.0
        return forced


class LibraryDecoder:
    """The engine's decoding through transformers' own ``model.generate``, for any causal LM.

    Same interface, token rules (:class:`_EngineRules`) and answers' form as :class:`DecodingEngine`:
    prompts sorted by length, batches of ``batch_size`` with left padding, one ``generate`` call
    per batch with the model's own attention and cache (sliding windows, softcapping, sinks
    included). No shared-prefix cache: every prompt is computed in full.
    """

    def __init__(self, model, eos_ids: Sequence[int], pad_id: int, batch_size: int = 32):
        self.model = model
        self.eos_ids = sorted(set(int(token) for token in eos_ids))
        self.pad_id = int(pad_id)
        self.batch_size = batch_size
        self.use_prefix_cache = False
        self.stats = DecodeStats()

    @property
    def device(self):
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[int]], decoding: DecodingSettings, exempt_ids: Sequence[int] = (),
                 answer_format: AnswerFormat | None = None, progress=None) -> list[list[int]]:
        """As :meth:`DecodingEngine.generate`: the answer tokens of each prompt, without the end-of-sequence token."""
        from transformers import GenerationConfig, LogitsProcessorList

        prompts = [list(prompt) for prompt in prompts]
        if any(not prompt for prompt in prompts):
            raise ValueError("every prompt needs at least one token")
        # The model's own generation defaults (top_k, penalties, ...) must not add to the engine's rules.
        config = GenerationConfig(max_new_tokens=decoding.max_new_tokens, do_sample=False,
                                  eos_token_id=self.eos_ids, pad_token_id=self.pad_id)
        order = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
        answers: list[list[int] | None] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = max(len(prompts[index]) for index in batch)
            input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, index in enumerate(batch):
                input_ids[row, width - len(prompts[index]):] = torch.tensor(prompts[index])
                attention_mask[row, width - len(prompts[index]):] = 1
            rows = [_RowState(answer_format) for _ in batch]
            generators = ([_row_generator(decoding.seed, prompts[index], self.device) for index in batch]
                          if decoding.do_sample else None)
            rules = _EngineRules(rows, decoding, self.eos_ids, exempt_ids, generators,
                                 self.model.get_output_embeddings().weight.shape[0], self.device)
            self.model.generate(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                                generation_config=config, logits_processor=LogitsProcessorList([rules]))
            for row, index in enumerate(batch):
                answers[index] = rows[row].output
            self.stats.add(DecodeStats(prompts=len(batch), prompt_tokens=int(attention_mask.sum()),
                                       computed_prompt_tokens=int(attention_mask.sum()),
                                       generated_tokens=sum(len(row.output) for row in rows)))
            if progress is not None:
                progress.update(len(batch))
        return answers


DECODERS = ("auto", "engine", "transformers")


def make_decoder(model, eos_ids: Sequence[int], pad_id: int, decoder: str = "auto", batch_size: int = 32,
                 use_prefix_cache: bool = True):
    """The decoder of ``model``: ``engine`` (:class:`DecodingEngine`, raises :class:`UnsupportedModelError`
    for architectures it is not tested on), ``transformers`` (:class:`LibraryDecoder`) or ``auto``."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; use one of {', '.join(DECODERS)}")
    if decoder == "auto":
        reason = engine_support(model.config)
        if reason is not None:
            logger.info("decoding %s with transformers' generate: the lamar engine does not support it (%s)",
                        type(model).__name__, reason)
        decoder = "engine" if reason is None and ENGINE_BY_DEFAULT else "transformers"
    if decoder == "engine":
        return DecodingEngine(model, eos_ids, pad_id, batch_size=batch_size, use_prefix_cache=use_prefix_cache)
    return LibraryDecoder(model, eos_ids, pad_id, batch_size=batch_size)
