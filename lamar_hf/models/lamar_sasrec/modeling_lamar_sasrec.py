"""Signal-aware SASRec: a causal self-attention next-item recommender whose item table fuses item-id
embeddings with frozen sentence embeddings of each item's texts (LaMAR signals and/or metadata).

Self-contained (torch + transformers + its configuration) so that it travels to the Hub as remote code.

Inputs are item-id sequences padded on the right with 0, oldest item first. Thanks to right padding
and causal attention no real position ever attends to padding, so no attention mask is needed, and
logits are computed only where they are used: at labelled positions in training, at each sequence's
last item otherwise.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_lamar_sasrec import LamarSASRecConfig

IGNORE_INDEX = -100


class RandMaskDropout(nn.Dropout):
    """``nn.Dropout`` whose mask on CPU comes from ``torch.rand``: the same distribution, drawn about twice as fast as
    the ``bernoulli_`` of ``F.dropout`` (a ``[12102, 64]`` item table: 6.7 ms against 11.4 ms, 2-core AMD EPYC; the
    masks were a fifth of a Beauty training step). Elsewhere (GPU) it is ``nn.Dropout``."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or hidden.device.type != "cpu":
            return super().forward(hidden)
        if self.p == 1:
            return torch.zeros_like(hidden)
        return hidden * ((torch.rand_like(hidden) >= self.p) * (1 / (1 - self.p)))


def gather_rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]``, ``[*ids.shape, width]``, by ``index_select`` over the flattened ids: on CPU its backward
    (``index_add_``) took half the time of advanced indexing's (``index_put_``) for ``[128, 1024]`` drawn ids."""
    return table.index_select(0, ids.reshape(-1)).view(*ids.shape, table.shape[-1])


def score_all_items(queries: torch.Tensor, item_table: torch.Tensor) -> torch.Tensor:
    """``[len(queries), len(item_table)]``: each query's score of every item, padding (item 0) at -inf so that it is
    never recommended. The -inf comes with the product (``addmm``'s bias): assigning it to column 0 afterwards would,
    under autograd, copy the whole gradient of the scores in the backward pass."""
    padding = queries.new_zeros(item_table.shape[0])
    padding[0] = float("-inf")
    return torch.addmm(padding, queries, item_table.T)


@dataclass
class LamarSASRecOutput(ModelOutput):
    """Output of [`LamarSASRecModel`].

    loss: next-item loss over the labelled positions (when ``labels`` are given).
    logits: ``[num_scored, num_items + 1]`` scores of every item (column 0, padding, is ``-inf``): one row per
        labelled position in row-major order when ``labels`` are given, else one row per sequence for the item
        that follows its last item. ``None`` while training with the sampled losses, which never need them.
    last_hidden_state: ``[batch, length, hidden_size]`` at the item positions (a user token's is left out), only
        when ``output_hidden_states=True``.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None


class LamarSASRecItemTable(nn.Module):
    """The item table ``[num_items + 1, hidden_size]``: item-id embeddings, fused with the item texts as
    ``config.fusion`` says (see [`LamarSASRecConfig`]).

    The sentence embeddings of the item texts, and what ``init`` and ``semantic_nullspace`` derive from them, are
    frozen buffers (saved with the model); only projections and fusion layers learn. Item attributes
    (``config.attribute_kinds``) are a long buffer of ids whose learned embeddings join the item-id embedding. The
    same table embeds the input items and scores the output.
    """

    def __init__(self, config: LamarSASRecConfig):
        super().__init__()
        self.fusion = config.fusion
        self.text_embedding_dim = config.text_embedding_dim
        self.initializer_range = config.initializer_range
        id_width = config.hidden_size - config.semantic_dims
        self.item_embeddings = nn.Embedding(config.num_items + 1, id_width, padding_idx=0)
        self.attribute_embeddings = None
        if config.attribute_kinds:  # learned like the ids, so they join the id part
            self.register_buffer(
                "item_attributes",
                torch.zeros(config.num_items + 1, len(config.attribute_kinds), dtype=torch.long),
                persistent=True,
            )
            self.attribute_embeddings = nn.ModuleList(
                nn.Embedding(size + 1, id_width, padding_idx=0) for size in config.attribute_vocab_sizes
            )
        if self.fusion in ("none", "init"):  # "init" reads its texts once, in set_texts
            return
        text_width = len(config.text_kinds) * config.text_embedding_dim
        if self.fusion == "semantic_nullspace":
            self.register_buffer("semantic_mean", torch.zeros(text_width), persistent=True)
            self.register_buffer("semantic_basis", torch.zeros(text_width, config.semantic_dims), persistent=True)
            self.register_buffer(
                "semantic_embeddings", torch.zeros(config.num_items + 1, config.semantic_dims), persistent=True
            )
            return
        self.register_buffer("text_embeddings", torch.zeros(config.num_items + 1, text_width), persistent=True)
        if self.fusion == "multiview":
            self.view_projections = nn.ModuleList(
                nn.Linear(config.text_embedding_dim, config.hidden_size) for _ in config.text_kinds
            )
            self.view_query = nn.Linear(config.hidden_size, config.hidden_size)
            return
        self.text_projection = nn.Linear(text_width, config.hidden_size)
        if self.fusion == "concat":
            self.fusion_projection = nn.Linear(2 * config.hidden_size, config.hidden_size)
        elif self.fusion == "gate":
            self.fusion_gate = nn.Linear(2 * config.hidden_size, config.hidden_size)

    def forward(self, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The fused rows of ``item_ids`` (``[..., hidden_size]``), or the whole table when ``item_ids`` is None."""
        ids = self.item_embeddings.weight if item_ids is None else self.item_embeddings(item_ids)
        if self.attribute_embeddings is not None:
            attributes = self.item_attributes if item_ids is None else self.item_attributes[item_ids]
            for kind, embeddings in enumerate(self.attribute_embeddings):
                ids = ids + embeddings(attributes[..., kind])
        if self.fusion in ("none", "init"):
            return ids
        if self.fusion == "semantic_nullspace":
            semantic = self.semantic_embeddings if item_ids is None else self.semantic_embeddings[item_ids]
            return torch.cat([semantic, ids], dim=-1)
        texts = self.text_embeddings if item_ids is None else self.text_embeddings[item_ids]
        if self.fusion == "multiview":
            parts = texts.split(self.text_embedding_dim, dim=-1)
            views = torch.stack([project(part) for project, part in zip(self.view_projections, parts)], dim=-2)
            affinity = (views @ self.view_query(ids)[..., None])[..., 0] / math.sqrt(views.shape[-1])
            return ids + (torch.softmax(affinity, dim=-1)[..., None] * views).sum(dim=-2)
        texts = self.text_projection(texts)
        if self.fusion == "add":
            return ids + texts
        both = torch.cat([ids, texts], dim=-1)
        if self.fusion == "concat":
            return self.fusion_projection(both)
        gate = torch.sigmoid(self.fusion_gate(both))
        return gate * ids + (1 - gate) * texts

    @torch.no_grad()
    def set_texts(self, texts: torch.Tensor) -> None:
        """Take the items' concatenated text embeddings ``[num_items + 1, text width]`` (row 0, padding, ignored):
        kept as they are, or, for ``init`` and ``semantic_nullspace``, turned into principal components."""
        if self.fusion == "init":
            table = self.item_embeddings.weight
            mean, basis = self.principal_projection(texts, table.shape[1])
            table[1:, : basis.shape[1]] = ((texts[1:] - mean) @ basis).to(table)
        elif self.fusion == "semantic_nullspace":
            mean, basis = self.principal_projection(texts, self.semantic_basis.shape[1])
            self.semantic_mean.copy_(mean)
            self.semantic_basis.copy_(basis)
            self.semantic_embeddings.copy_((texts - mean) @ basis)
            self.semantic_embeddings[0] = 0  # padding
        else:
            self.text_embeddings.copy_(texts)

    def principal_projection(self, texts: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean [width], basis [width, <= dims])`` of the real items' texts (rows 1..): ``(t - mean) @ basis`` are
        their coordinates on the first ``dims`` principal directions (fewer when the texts are narrower), scaled
        together to standard deviation ``initializer_range``."""
        real = texts[1:].double()
        mean = real.mean(dim=0)
        centred = real - mean
        _, directions = torch.linalg.eigh(centred.T @ centred)  # ascending variance
        directions = directions.flip(-1)[:, :dims]
        # An eigenvector's sign is arbitrary: fix it (largest entry positive) so that equal texts give equal tables.
        largest = directions.gather(0, directions.abs().argmax(dim=0, keepdim=True))
        directions = directions * torch.where(largest < 0, -1.0, 1.0)
        spread = (centred @ directions).std(correction=0)
        scale = self.initializer_range / spread if spread > 0 else 0.0
        return mean.to(texts), (directions * scale).to(texts)


class LamarSASRecAttention(nn.Module):
    """Causal multi-head self-attention (PyTorch's fused scaled-dot-product kernel)."""

    def __init__(self, config: LamarSASRecConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.dropout = config.attention_dropout_prob
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from ``hidden`` (the queries) to ``context`` (keys and values; default ``hidden``)."""
        batch, length, width = hidden.shape
        if context is None:
            projected = self.qkv(hidden)
        else:
            weight, bias = self.qkv.weight, self.qkv.bias
            projected = torch.cat(
                [F.linear(hidden, weight[:width], bias[:width]), F.linear(context, weight[width:], bias[width:])], dim=-1
            )
        query, key, value = projected.view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            query, key, value, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        return self.output(attended.transpose(1, 2).reshape(batch, length, width))


class LamarSASRecLayer(nn.Module):
    """One transformer block: causal self-attention, then a position-wise feed-forward layer, each in a residual
    branch with a layer norm before it (``config.norm_first``; ``config.residual_from_norm``: the SASRec authors'
    variant of it) or after the residual sum."""

    def __init__(self, config: LamarSASRecConfig):
        super().__init__()
        self.norm_first = config.norm_first
        self.residual_from_norm = config.residual_from_norm
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = LamarSASRecAttention(config)
        self.feed_forward_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = nn.Sequential(
            nn.Linear(config.hidden_size, config.intermediate_size),
            nn.ReLU() if config.hidden_act == "relu" else nn.GELU(),
            RandMaskDropout(config.hidden_dropout_prob),
            nn.Linear(config.intermediate_size, config.hidden_size),
        )
        self.dropout = RandMaskDropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.residual_from_norm:
            normed = self.attention_norm(hidden)
            hidden = normed + self.attention(normed, context=hidden)
            normed = self.feed_forward_norm(hidden)
            return normed + self.dropout(self.feed_forward(normed))
        if self.norm_first:
            hidden = hidden + self.dropout(self.attention(self.attention_norm(hidden)))
            return hidden + self.dropout(self.feed_forward(self.feed_forward_norm(hidden)))
        hidden = self.attention_norm(hidden + self.dropout(self.attention(hidden)))
        return self.feed_forward_norm(hidden + self.dropout(self.feed_forward(hidden)))


class LamarSASRecPreTrainedModel(PreTrainedModel):
    config_class = LamarSASRecConfig
    base_model_prefix = "lamar_sasrec"
    main_input_name = "input_ids"

    def _init_weights(self, module):
        if self.config.initialization == "xavier_normal" and isinstance(module, (nn.Linear, nn.Embedding)):
            init.xavier_normal_(module.weight)
            if isinstance(module, nn.Linear) and module.bias is not None:
                init.zeros_(module.bias)
            # The slice loses the weight's "already initialised" flag, so check it here (as transformers does).
            if isinstance(module, nn.Embedding) and module.padding_idx is not None \
                    and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        else:
            super()._init_weights(module)


class LamarSASRecModel(LamarSASRecPreTrainedModel):
    """SASRec next-item recommender with optional fusion of frozen item-text embeddings (see the config).

    ``model(input_ids, labels)`` trains; :meth:`score` and :meth:`recommend` serve recommendations.
    A new model needs its item data once: its text embeddings (:meth:`set_text_embeddings`) for a
    ``fusion`` other than ``none``, its attribute ids (:meth:`set_item_attributes`) for ``attribute_kinds``; a
    saved one carries them.
    """

    def __init__(self, config: LamarSASRecConfig):
        super().__init__(config)
        if config.num_items < 1:
            raise ValueError(f"num_items must be at least 1, got {config.num_items}")
        self.item_table = LamarSASRecItemTable(config)
        if config.loss_type == "gbce" and config.num_negatives > config.num_items - 1:
            raise ValueError(
                f"gbce needs num_negatives of at most num_items - 1 ({config.num_items - 1}), got {config.num_negatives}"
            )
        if config.negative_sampling == "popularity":  # the training counts negatives are drawn by (set_item_counts)
            self.register_buffer("item_counts", torch.zeros(config.num_items + 1), persistent=True)
        self.position_embeddings = nn.Embedding(config.max_history_length, config.hidden_size)
        self.dropout = RandMaskDropout(config.hidden_dropout_prob)
        self.item_dropout = RandMaskDropout(config.item_dropout_prob)
        self.layers = nn.ModuleList(LamarSASRecLayer(config) for _ in range(config.num_hidden_layers))
        # Pre-norm blocks end with a layer norm; post-norm blocks start from a normalised input instead.
        self.input_norm = nn.Identity() if config.norm_first else nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.norm_first else nn.Identity()
        # One learned score for "already in the history"; starts neutral.
        self.repeat_score = nn.Parameter(torch.zeros(())) if config.repeat_bias else None
        if config.user_text_embedding_dim:  # the user's own text, read as one token before the first item
            self.user_projection = nn.Linear(config.user_text_embedding_dim, config.hidden_size)
            self.user_position_embedding = nn.Embedding(1, config.hidden_size)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.item_table.item_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.item_table.item_embeddings = value

    def set_text_embeddings(self, embeddings) -> None:
        """Store the item-text embeddings: a mapping ``kind -> [num_items + 1, text_embedding_dim]`` holding every
        kind of ``config.text_kinds`` (row ``i`` is item ``i``; row 0, padding, is ignored). With ``fusion="init"``
        this overwrites the item-id table with the texts' principal components; with ``"semantic_nullspace"`` it
        sets the frozen semantic part (see the config). Call it once, on a new model: a saved model carries it."""
        config = self.config
        if config.fusion == "none":
            raise ValueError("this model has fusion='none' and uses no text embeddings")
        missing = [kind for kind in config.text_kinds if kind not in embeddings]
        if missing:
            raise ValueError(f"text embeddings for {', '.join(missing)} are missing (have {', '.join(embeddings)})")
        expected = (config.num_items + 1, config.text_embedding_dim)
        for kind in config.text_kinds:
            if tuple(embeddings[kind].shape) != expected:
                raise ValueError(f"text embeddings {kind!r} have shape {tuple(embeddings[kind].shape)}, expected {expected}")
        reference = self.item_table.item_embeddings.weight
        stacked = torch.cat([torch.as_tensor(embeddings[kind]).to(reference) for kind in config.text_kinds], dim=-1)
        self.item_table.set_texts(stacked)

    def set_item_attributes(self, attributes) -> None:
        """Store the items' attribute ids: a mapping ``kind -> [num_items + 1]`` integer array holding every kind of
        ``config.attribute_kinds`` (row ``i`` is item ``i``; row 0, padding, is stored as 0). The ids of a kind run
        ``0..size`` with ``size`` its entry of ``config.attribute_vocab_sizes``; 0 means none / unknown.

        Raises:
            ValueError: for a model without attributes, a kind that is missing or unknown, a wrong shape, ids that are
                not integers, or an id outside ``0..size`` (naming the item).
        """
        config = self.config
        if not config.attribute_kinds:
            raise ValueError("this model has no item attributes (attribute_kinds is empty)")
        unknown = [kind for kind in attributes if kind not in config.attribute_kinds]
        if unknown:
            raise ValueError(
                f"unknown attribute kinds {', '.join(map(str, unknown))}; this model has {', '.join(config.attribute_kinds)}"
            )
        missing = [kind for kind in config.attribute_kinds if kind not in attributes]
        if missing:
            raise ValueError(f"attribute ids for {', '.join(missing)} are missing (have {', '.join(attributes)})")
        expected, columns = (config.num_items + 1,), []
        for kind, size in zip(config.attribute_kinds, config.attribute_vocab_sizes):
            ids = torch.as_tensor(attributes[kind])
            if tuple(ids.shape) != expected:
                raise ValueError(f"attribute ids {kind!r} have shape {tuple(ids.shape)}, expected {expected}")
            if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
                raise ValueError(f"attribute ids {kind!r} must be integers, got {ids.dtype}")
            outside = ((ids < 0) | (ids > size)).nonzero()
            if len(outside):
                item = int(outside[0, 0])
                raise ValueError(
                    f"attribute {kind!r} of item {item} is {int(ids[item])}, outside 0..{size} (attribute_vocab_sizes)"
                )
            columns.append(ids.long())
        buffer = self.item_table.item_attributes
        with torch.no_grad():
            buffer.copy_(torch.stack(columns, dim=1))
            buffer[0] = 0  # padding

    def set_item_counts(self, counts) -> None:
        """Store how often each item occurs in the training data, ``[num_items + 1]`` (row 0, padding, is ignored):
        ``negative_sampling="popularity"`` draws negatives in proportion to these counts."""
        if self.config.negative_sampling != "popularity":
            raise ValueError("this model draws negatives uniformly (negative_sampling='uniform'): it uses no item counts")
        counts = torch.as_tensor(counts, dtype=self.item_counts.dtype)
        expected = (self.config.num_items + 1,)
        if tuple(counts.shape) != expected:
            raise ValueError(f"item counts have shape {tuple(counts.shape)}, expected {expected}")
        if (counts < 0).any() or not counts[1:].any():
            raise ValueError("item counts must be non-negative, with at least one item counted")
        with torch.no_grad():
            self.item_counts.copy_(counts)
            self.item_counts[0] = 0  # padding is never drawn

    def forward(
        self,
        input_ids: torch.LongTensor,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        user_embeddings: torch.Tensor | None = None,
    ) -> LamarSASRecOutput:
        """Score next items.

        Args:
            input_ids: ``[batch, length]`` item ids, oldest first, right-padded with 0, ``length <= max_history_length``.
            labels: ``[batch, length]`` the item that follows each position, ``-100`` where nothing is to be
                predicted (padding, or every position but the last when evaluating).
            output_hidden_states: also return the final hidden states (of the item positions).
            user_embeddings: ``[batch, user_text_embedding_dim]``, each sequence's user text embedding; required by
                a model with a user token (``user_text_embedding_dim > 0``), refused by one without.

        Raises:
            ValueError: for padding that is not at the end, sequences longer than ``max_history_length``, an empty
                sequence (without labels), labels with no target, or missing, unexpected or misshapen
                ``user_embeddings``.
        """
        real = input_ids != 0
        if input_ids.shape[1] > self.config.max_history_length:
            raise ValueError(f"input of length {input_ids.shape[1]} exceeds max_history_length {self.config.max_history_length}")
        if (real[:, 1:] > real[:, :-1]).any():
            raise ValueError("input_ids must be right-padded: padding (item 0) may only follow the real items")
        user_token = self._user_token(user_embeddings, input_ids.shape[0])
        item_table = None if self._fuses_only_the_rows_read(input_ids, labels) else self.item_table()
        if item_table is not None:
            item_table = self.item_dropout(item_table)  # the identity unless training with item_dropout_prob
            item_rows = functools.partial(gather_rows, item_table)
        else:
            item_rows = self._dropped_item_rows
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        if self.config.position_order == "from_end":  # the last real item is 0; padding (after it) clamps to 0
            positions = (real.sum(dim=1, keepdim=True) - 1 - positions).clamp(min=0)
        embedded = item_rows(input_ids) + self.position_embeddings(positions)
        if user_token is not None:  # every item position attends to it; it attends to none
            user_token = user_token + self.user_position_embedding.weight[0]
            embedded = torch.cat([user_token[:, None], embedded], dim=1)
        hidden = self.dropout(self.input_norm(embedded))
        for layer in self.layers:
            hidden = layer(hidden)
        hidden = self.final_norm(hidden)
        if user_token is not None:
            hidden = hidden[:, 1:]  # the item positions, as without the token

        if labels is not None:
            if labels.shape != input_ids.shape:
                raise ValueError(f"labels have shape {tuple(labels.shape)}, input_ids {tuple(input_ids.shape)}")
            scored = labels != IGNORE_INDEX
            if not scored.any():
                raise ValueError("labels hold no target (every position is -100)")
            rows, positions = scored.nonzero(as_tuple=True)  # row-major, as the logits rows
            targets = labels[rows, positions]
        else:
            lengths = real.sum(dim=1)
            if (lengths == 0).any():
                raise ValueError("a sequence is empty: at least one item is needed to recommend the next")
            rows, positions = torch.arange(hidden.shape[0], device=hidden.device), lengths - 1
            targets = None
        queries = hidden[rows, positions]

        loss = logits = None
        if self.config.loss_type != "ce" and targets is not None:
            repeat_shift = None
            if self.repeat_score is not None:
                read_by = self._first_positions(input_ids)

                def repeat_shift(items):  # the repeat score where the item was read at or before the query's position
                    return self.repeat_score * (read_by[rows[:, None], items] <= positions[:, None])

            loss = self._sampled_loss(queries, targets, item_rows, rows, repeat_shift)
        if not (self.training and loss is not None):
            history = self._items_read(input_ids, rows, positions) if self.repeat_score is not None else None
            logits = score_all_items(queries, item_table)
            if history is not None and torch.is_grad_enabled():
                # In place, as when ranking: a dense [rows, items] mask cost half of a full-softmax epoch. Each item
                # once per row, so that an item read twice gets one shift and one shift's gradient; the repeats
                # become padding, which stays at -inf.
                history = history.sort(dim=1).values
                history[:, 1:] = history[:, 1:].masked_fill(history[:, 1:] == history[:, :-1], 0)
                logits.scatter_add_(1, history, self.repeat_score.expand(history.shape))
            elif history is not None:  # ranking: in place, no [rows, items] mask (a third of a full-ranking pass)
                logits.scatter_(1, history, logits.gather(1, history) + self.repeat_score)
            if targets is not None and loss is None:
                loss = F.cross_entropy(logits, targets)
        return LamarSASRecOutput(
            loss=loss, logits=logits, last_hidden_state=hidden if output_hidden_states else None
        )

    def _user_token(self, user_embeddings, batch_size: int) -> torch.Tensor | None:
        """``[batch_size, hidden_size]``: each sequence's user text embedding projected to the item space, or None
        for a model without a user token. Raises ValueError for ``user_embeddings`` missing, unexpected or of the
        wrong shape."""
        width = self.config.user_text_embedding_dim
        if not width:
            if user_embeddings is not None:
                raise ValueError("this model reads no user embedding (user_text_embedding_dim=0): leave user_embeddings out")
            return None
        if user_embeddings is None:
            raise ValueError(
                f"this model reads a user text embedding as a token before the items (user_text_embedding_dim={width}): "
                f"pass user_embeddings [batch, {width}]"
            )
        user_embeddings = torch.as_tensor(user_embeddings)
        if tuple(user_embeddings.shape) != (batch_size, width):
            raise ValueError(f"user_embeddings have shape {tuple(user_embeddings.shape)}, expected ({batch_size}, {width})")
        return self.user_projection(user_embeddings.to(self.user_projection.weight))

    @staticmethod
    def _items_read(input_ids, rows, positions) -> torch.Tensor:
        """``[len(rows), length]``: for each scored position, the items read up to and including it (0 after it)."""
        after = torch.arange(input_ids.shape[1], device=input_ids.device) > positions[:, None]
        return input_ids[rows].masked_fill(after, 0)

    def _first_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[batch, num_items + 1]``: the first position at which each sequence reads each item (``length`` for an
        item it never reads), so that an item is in the history of position ``p`` iff its entry is ``<= p``. One
        gather per scored item then replaces comparing it with every item of its history (``batch x (num_items + 1)``
        bytes: 1.5 MB for a Beauty batch)."""
        length = input_ids.shape[1]
        dtype = torch.uint8 if length < 256 else torch.int32
        first = input_ids.new_full((input_ids.shape[0], self.config.num_items + 1), length, dtype=dtype)
        positions = torch.arange(length, device=input_ids.device, dtype=dtype).expand_as(input_ids)
        return first.scatter_reduce_(1, input_ids, positions, reduce="amin")

    def _dropped_item_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """The item-table rows of ``ids``, each with a dropout mask of its own while training."""
        return self.item_dropout(self.item_table(ids))

    def _fuses_only_the_rows_read(self, input_ids, labels) -> bool:
        """Whether a training step of a sampled loss fuses only the item rows it reads (inputs, targets, negatives)
        rather than the whole table once: only while those rows are fewer than the table's (negatives drawn per
        position or per sequence soon outnumber the items, and fusing each drawn row would cost more)."""
        if not (self.training and labels is not None and self.config.loss_type != "ce"):
            return False
        draws = {"batch": 1, "sequence": input_ids.shape[0]}.get(self.config.negative_sharing, input_ids.numel())
        return 2 * input_ids.numel() + draws * self.config.num_negatives < self.config.num_items + 1

    def _sampled_loss(self, queries, targets, item_rows, query_rows, score_shift=None) -> torch.Tensor:
        """The ``config.loss_type`` loss of each query's target against drawn negatives (a draw may hit the target;
        with thousands of items that is rare and harmless). ``query_rows`` ``[n]`` is the batch row (sequence) of
        each query, in ascending order. ``score_shift``, if given, maps items ``[n, k]`` (``k`` per query) to
        amounts added to their scores. ``item_rows(ids)`` gives the item-table rows of ``ids``."""
        config = self.config
        if config.negative_sharing == "batch":  # one draw for the batch: a [n, d] x [d, k] product, no n * k item rows
            negatives = self._draw_negatives((config.num_negatives,), targets.device)
            negative_scores = queries @ item_rows(negatives).T
            negatives = negatives.expand(targets.shape[0], -1)
        elif config.negative_sharing == "sequence":  # one draw per sequence: a [slots, d] x [d, k] product per sequence
            counts = torch.bincount(query_rows)
            slots = torch.arange(len(query_rows), device=queries.device) - (counts.cumsum(0) - counts)[query_rows]
            grouped = queries.new_zeros(len(counts), int(counts.max()), queries.shape[1])
            grouped = grouped.index_put((query_rows, slots), queries)
            negatives = self._draw_negatives((len(counts), config.num_negatives), targets.device)
            # [sequences, k, slots], then read as [sequences, slots, k]: the gradient of the drawn rows comes out
            # contiguous, with no copy of the [sequences, k, hidden] rows
            negative_scores = torch.bmm(item_rows(negatives), grouped.transpose(1, 2)).transpose(1, 2)[query_rows, slots]
            negatives = negatives[query_rows]
        else:  # each position has negatives of its own (as SASRec's BCE and RecTools' sampled softmax)
            negatives = self._draw_negatives((targets.shape[0], config.num_negatives), targets.device)
            negative_scores = torch.bmm(item_rows(negatives), queries[:, :, None])[:, :, 0]
        positive_scores = (queries * item_rows(targets)).sum(-1)
        if score_shift is not None:
            positive_scores = positive_scores + score_shift(targets[:, None])[:, 0]
            negative_scores = negative_scores + score_shift(negatives)
        if config.loss_type == "bce":
            return F.binary_cross_entropy_with_logits(
                positive_scores, torch.ones_like(positive_scores)
            ) + F.binary_cross_entropy_with_logits(negative_scores, torch.zeros_like(negative_scores))
        if config.loss_type == "gbce":
            # gSASRec: -log(sigmoid(s) ** beta) = beta * softplus(-s) for the target, plain BCE for the negatives,
            # averaged over all scores as in the authors' code.
            alpha = config.num_negatives / (config.num_items - 1)
            beta = alpha * (config.gbce_t * (1 - 1 / alpha) + 1 / alpha)
            total = beta * F.softplus(-positive_scores).sum() + F.softplus(negative_scores).sum()
            return total / (positive_scores.numel() + negative_scores.numel())
        if config.negative_sampling == "popularity":  # logQ correction: popular items are not pushed down for being drawn often
            negative_scores = negative_scores - self._draw_log_probabilities()[negatives]
        logits = torch.cat([positive_scores[:, None], negative_scores], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(targets))

    def _draw_log_probabilities(self) -> torch.Tensor:
        """``[num_items + 1]``: the log probability that a popularity draw picks each item."""
        counts = self.item_counts
        if not counts.any():
            raise ValueError("popularity sampling needs the training item counts: call set_item_counts first")
        return (counts / counts.sum()).log()

    def _draw_negatives(self, shape: tuple[int, ...], device) -> torch.Tensor:
        """Item ids of ``shape`` drawn with replacement from items 1..num_items (never padding), uniformly or, with
        ``negative_sampling="popularity"``, in proportion to the training counts."""
        if self.config.negative_sampling == "popularity":
            probabilities = self._draw_log_probabilities().exp()
            return torch.multinomial(probabilities, math.prod(shape), replacement=True).view(shape)
        return torch.randint(1, self.config.num_items + 1, shape, device=device)

    def _check_histories(self, histories: Sequence[Sequence[int]]) -> list[list[int]]:
        """Validated histories, each cut to its most recent ``max_history_length`` items."""
        num_items, checked = self.config.num_items, []
        for row, history in enumerate(histories):
            history = [operator.index(item) for item in history]
            if not history:
                raise ValueError(f"history {row} is empty: at least one item is needed to recommend the next")
            if min(history) < 1 or max(history) > num_items:
                position, item = next((p, i) for p, i in enumerate(history) if not 1 <= i <= num_items)
                raise ValueError(
                    f"history {row} has unknown item id {item} at position {position}; this model knows items 1..{num_items}"
                )
            checked.append(history[-self.config.max_history_length :])
        return checked

    @torch.no_grad()
    def score(
        self,
        histories: Sequence[Sequence[int]],
        batch_size: int = 1024,
        exclude_history: bool = False,
        user_embeddings=None,
    ) -> torch.Tensor:
        """Scores ``[len(histories), num_items + 1]`` of every item as the next one after each history.

        Each history lists item ids oldest first; only its most recent ``max_history_length`` items are read.
        Column 0 (padding) is ``-inf``, and so is every item of a history (all of it, not only the part read) with
        ``exclude_history=True``. A model with a user token needs ``user_embeddings``
        ``[len(histories), user_text_embedding_dim]``, one row per history. Runs in evaluation mode (no dropout)
        and restores the previous mode.

        Raises:
            ValueError: for an empty history, an item id outside ``1..num_items``, or ``user_embeddings`` missing,
                unexpected or not one row per history.
            TypeError: for an item id that is not an integer.
        """
        whole_histories = list(histories)
        histories = self._check_histories(whole_histories)
        if user_embeddings is not None:
            user_embeddings = torch.as_tensor(user_embeddings)
            if user_embeddings.ndim != 2 or len(user_embeddings) != len(histories):
                raise ValueError(
                    f"user_embeddings have shape {tuple(user_embeddings.shape)}: one row per history "
                    f"({len(histories)}) expected"
                )
        was_training = self.training
        self.eval()
        try:
            device, scores = self.device, []
            for start in range(0, len(histories), batch_size):
                batch = histories[start : start + batch_size]
                width = max(len(history) for history in batch)
                input_ids = torch.tensor([history + [0] * (width - len(history)) for history in batch], device=device)
                users = None if user_embeddings is None else user_embeddings[start : start + batch_size].to(device)
                scores.append(self(input_ids, user_embeddings=users).logits.float())
            scores = torch.cat(scores) if scores else torch.empty(0, self.config.num_items + 1, device=device)
            if exclude_history:
                for row, history in enumerate(whole_histories):
                    scores[row, [operator.index(item) for item in history]] = float("-inf")
            return scores
        finally:
            self.train(was_training)

    def recommend(self, history, k: int = 10, exclude_history: bool = False, user_embeddings=None):
        """The ``k`` items most likely to follow ``history``, best first.

        ``history`` is one list of item ids (oldest first), giving a list of ``k`` ids, or a list of such lists,
        giving one list per history. Histories longer than ``max_history_length`` are cut to their most recent items,
        as in training. With ``exclude_history=True`` items already in the history are never recommended. A model
        with a user token needs ``user_embeddings``: the user's text embedding ``[user_text_embedding_dim]`` for one
        history, one row per history for a list.

        Raises:
            ValueError: for an empty history, an unknown item id, ``k`` outside ``1..num_items``, or
                ``user_embeddings`` that do not fit (see :meth:`score`).
            TypeError: for an item id that is not an integer.
        """
        if isinstance(history, torch.Tensor):
            history = history.tolist()
        single = len(history) == 0 or not isinstance(history[0], (Sequence, torch.Tensor))
        histories = [history] if single else [h.tolist() if isinstance(h, torch.Tensor) else h for h in history]
        if not 1 <= k <= self.config.num_items:
            raise ValueError(f"k must be between 1 and the number of items ({self.config.num_items}), got {k}")
        if user_embeddings is not None and single:
            user_embeddings = torch.as_tensor(user_embeddings)
            user_embeddings = user_embeddings[None] if user_embeddings.ndim == 1 else user_embeddings
        scores = self.score(histories, exclude_history=exclude_history, user_embeddings=user_embeddings)
        top = scores.topk(k, dim=1).indices.tolist()
        return top[0] if single else top
