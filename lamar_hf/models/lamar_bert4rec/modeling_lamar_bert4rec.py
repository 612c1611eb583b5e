"""Signal-aware BERT4Rec: a bidirectional self-attention recommender trained by cloze (masked-item) prediction,
whose item table fuses item-id embeddings with frozen sentence embeddings of each item's texts (LaMAR signals
and/or metadata).

Self-contained (torch + transformers + its configuration) so that it travels to the Hub as remote code.

The model takes the same inputs as the other lamar-hf recommenders, so one trainer and one collator serve them
all: item-id sequences padded on the right with 0, oldest item first, and ``labels`` holding the item that follows
each position (``-100`` where nothing is to be predicted). The cloze task is built inside ``forward``:

* training (``model.train()`` and ``labels`` given): each sequence is its real items followed by the label of its
  last real item (the oldest item is dropped if that overflows ``max_history_length``); every item is replaced by
  the mask token (id ``num_items + 1``) with probability ``mask_prob`` (the last item when the draw masked none),
  and the loss is the prediction of the original items at the masked positions only. Labels at other positions
  are not read: they are the sequence's own next items.
* inference (no ``labels``, or evaluation mode): the mask token is appended right after each sequence's last real
  item (dropping the oldest item when the window is full) and that position is scored. ``labels``, if given, may
  mark only each sequence's last real position, whose label is the target.

Attention is bidirectional; padding is never attended, and outputs at padding positions are never used.
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
from transformers.utils import ModelOutput

from .configuration_lamar_bert4rec import LamarBERT4RecConfig

IGNORE_INDEX = -100


# Copied from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec.RandMaskDropout
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


# Copied from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec.gather_rows
def gather_rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]``, ``[*ids.shape, width]``, by ``index_select`` over the flattened ids: on CPU its backward
    (``index_add_``) took half the time of advanced indexing's (``index_put_``) for ``[128, 1024]`` drawn ids."""
    return table.index_select(0, ids.reshape(-1)).view(*ids.shape, table.shape[-1])


# Copied from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec.score_all_items
def score_all_items(queries: torch.Tensor, item_table: torch.Tensor) -> torch.Tensor:
    """``[len(queries), len(item_table)]``: each query's score of every item, padding (item 0) at -inf so that it is
    never recommended. The -inf comes with the product (``addmm``'s bias): assigning it to column 0 afterwards would,
    under autograd, copy the whole gradient of the scores in the backward pass."""
    padding = queries.new_zeros(item_table.shape[0])
    padding[0] = float("-inf")
    return torch.addmm(padding, queries, item_table.T)


@dataclass
class LamarBERT4RecOutput(ModelOutput):
    """Output of [`LamarBERT4RecModel`].

    loss: loss over the masked positions in training, over the labelled next items otherwise, (when ``labels`` are given).
    logits: ``[num_scored, num_items + 1]`` scores of every item (column 0, padding, is ``-inf``): one row per
        masked position in row-major order while training, else one row per sequence (with a label, when
        ``labels`` are given) for the item that follows its last item. ``None`` while training with the sampled
        losses, which never need them.
    last_hidden_state: ``[batch, length', hidden_size]`` over the sequences as the encoder saw them (masked, or
        with the mask token appended; a user token's position left out), only when ``output_hidden_states=True``.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None


# Copied from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec.LamarSASRecItemTable with LamarSASRec->LamarBERT4Rec
class LamarBERT4RecItemTable(nn.Module):
    """The item table ``[num_items + 1, hidden_size]``: item-id embeddings, fused with the item texts as
    ``config.fusion`` says (see [`LamarBERT4RecConfig`]).

    The sentence embeddings of the item texts, and what ``init`` and ``semantic_nullspace`` derive from them, are
    frozen buffers (saved with the model); only projections and fusion layers learn. Item attributes
    (``config.attribute_kinds``) are a long buffer of ids whose learned embeddings join the item-id embedding. The
    same table embeds the input items and scores the output.
    """

    def __init__(self, config: LamarBERT4RecConfig):
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


class LamarBERT4RecAttention(nn.Module):
    """Bidirectional multi-head self-attention over the real positions (PyTorch's fused scaled-dot-product kernel)."""

    def __init__(self, config: LamarBERT4RecConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.dropout = config.attention_dropout_prob
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        batch, length, width = hidden.shape
        query, key, value = self.qkv(hidden).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.output(attended.transpose(1, 2).reshape(batch, length, width))


class LamarBERT4RecLayer(nn.Module):
    """One post-norm transformer block (as in BERT): self-attention, then a position-wise feed-forward layer."""

    def __init__(self, config: LamarBERT4RecConfig):
        super().__init__()
        self.attention = LamarBERT4RecAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = nn.Sequential(
            nn.Linear(config.hidden_size, config.intermediate_size),
            nn.GELU(),
            nn.Linear(config.intermediate_size, config.hidden_size),
        )
        self.feed_forward_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = RandMaskDropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.attention_norm(hidden + self.dropout(self.attention(hidden, attention_mask)))
        return self.feed_forward_norm(hidden + self.dropout(self.feed_forward(hidden)))


class LamarBERT4RecPreTrainedModel(PreTrainedModel):
    config_class = LamarBERT4RecConfig
    base_model_prefix = "lamar_bert4rec"
    main_input_name = "input_ids"


class LamarBERT4RecModel(LamarBERT4RecPreTrainedModel):
    """BERT4Rec recommender with optional fusion of frozen item-text embeddings (see the config and the module
    docstring for how training masks items and inference appends the mask token).

    ``model(input_ids, labels)`` trains; :meth:`score` and :meth:`recommend` serve recommendations.
    A new model needs its item data once: its text embeddings (:meth:`set_text_embeddings`) for a
    ``fusion`` other than ``none``, its attribute ids (:meth:`set_item_attributes`) for ``attribute_kinds``; a
    saved one carries them.
    """

    def __init__(self, config: LamarBERT4RecConfig):
        super().__init__(config)
        if config.num_items < 1:
            raise ValueError(f"num_items must be at least 1, got {config.num_items}")
        self.mask_token_id = config.num_items + 1
        self.item_table = LamarBERT4RecItemTable(config)
        if config.loss_type == "gbce" and config.num_negatives > config.num_items - 1:
            raise ValueError(
                f"gbce needs num_negatives of at most num_items - 1 ({config.num_items - 1}), got {config.num_negatives}"
            )
        if config.negative_sampling == "popularity":  # the training counts negatives are drawn by (set_item_counts)
            self.register_buffer("item_counts", torch.zeros(config.num_items + 1), persistent=True)
        # Its own row, outside the item table, so that the mask token is an input only and never recommended.
        self.mask_embedding = nn.Embedding(1, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_history_length, config.hidden_size)
        self.embedding_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = RandMaskDropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(LamarBERT4RecLayer(config) for _ in range(config.num_hidden_layers))
        self.prediction_head = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            nn.GELU(),
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps),
        )
        if config.user_text_embedding_dim:  # the user's own text, read as one token before the first item
            self.user_projection = nn.Linear(config.user_text_embedding_dim, config.hidden_size)
            self.user_position_embedding = nn.Embedding(1, config.hidden_size)
        self.post_init()

    # Copied from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec.LamarSASRecModel.get_input_embeddings
    def get_input_embeddings(self) -> nn.Embedding:
        return self.item_table.item_embeddings

    # Copied from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec.LamarSASRecModel.set_input_embeddings
    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.item_table.item_embeddings = value

    # Copied from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec.LamarSASRecModel.set_text_embeddings
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

    # Copied from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec.LamarSASRecModel.set_item_attributes
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

    # Copied from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec.LamarSASRecModel.set_item_counts
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
    ) -> LamarBERT4RecOutput:
        """Score items: masked items while training with labels, the next item otherwise (see the module docstring).

        Args:
            input_ids: ``[batch, length]`` item ids, oldest first, right-padded with 0, ``length <= max_history_length``.
            labels: ``[batch, length]`` the item that follows each position, ``-100`` where nothing is to be
                predicted. In training only the label of each sequence's last real item is read (it joins the
                sequence); in evaluation only that label may be set.
            output_hidden_states: also return the final hidden states (of the item positions).
            user_embeddings: ``[batch, user_text_embedding_dim]``, each sequence's user text embedding; required by
                a model with a user token (``user_text_embedding_dim > 0``), refused by one without.

        Raises:
            ValueError: for padding that is not at the end, sequences longer than ``max_history_length``, an empty
                sequence, labels with no target, (in evaluation) labels anywhere but the last real position, or
                missing, unexpected or misshapen ``user_embeddings``.
        """
        real = input_ids != 0
        if input_ids.shape[1] > self.config.max_history_length:
            raise ValueError(f"input of length {input_ids.shape[1]} exceeds max_history_length {self.config.max_history_length}")
        if (real[:, 1:] > real[:, :-1]).any():
            raise ValueError("input_ids must be right-padded: padding (item 0) may only follow the real items")
        lengths = real.sum(dim=1)
        if (lengths == 0).any():
            raise ValueError("a sequence is empty: at least one item is needed")
        user_token = self._user_token(user_embeddings, input_ids.shape[0])
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        next_items = None
        if labels is not None:
            if labels.shape != input_ids.shape:
                raise ValueError(f"labels have shape {tuple(labels.shape)}, input_ids {tuple(input_ids.shape)}")
            if not (labels != IGNORE_INDEX).any():
                raise ValueError("labels hold no target (every position is -100)")
            next_items = labels[rows, lengths - 1]
        item_table = None if self._fuses_only_the_rows_read(input_ids, labels) else self.item_table()
        item_rows = self.item_table if item_table is None else functools.partial(gather_rows, item_table)

        if labels is not None and self.training:
            items, last = self._append(input_ids, lengths, next_items.clamp(min=0))
            masked = (torch.rand(items.shape, device=items.device) < self.config.mask_prob) & (items != 0)
            unmasked = ~masked.any(dim=1)
            masked[rows[unmasked], last[unmasked]] = True
            hidden = self._encode(items.masked_fill(masked, self.mask_token_id), item_rows, user_token)
            query_rows, positions = masked.nonzero(as_tuple=True)  # row-major
            queries, targets = self.prediction_head(hidden[query_rows, positions]), items[query_rows, positions]
        else:
            items, mask_positions = self._append(input_ids, lengths, torch.full_like(lengths, self.mask_token_id))
            hidden = self._encode(items, item_rows, user_token)
            queries, targets = self.prediction_head(hidden[rows, mask_positions]), None
            if labels is not None:
                elsewhere = (labels != IGNORE_INDEX).clone()
                elsewhere[rows, lengths - 1] = False
                if elsewhere.any():
                    raise ValueError(
                        "in evaluation BERT4Rec predicts only the item after each sequence's last item: "
                        "labels must be -100 at every other position"
                    )
                labelled = next_items != IGNORE_INDEX
                queries, targets, query_rows = queries[labelled], next_items[labelled], rows[labelled]

        loss = logits = None
        if self.config.loss_type != "ce" and targets is not None:
            loss = self._sampled_loss(queries, targets, item_rows, query_rows)
        if not (self.training and loss is not None):
            logits = score_all_items(queries, item_table)
            if targets is not None and loss is None:
                loss = F.cross_entropy(logits, targets)
        return LamarBERT4RecOutput(
            loss=loss, logits=logits, last_hidden_state=hidden if output_hidden_states else None
        )

    def _append(self, input_ids: torch.Tensor, lengths: torch.Tensor, items: torch.Tensor):
        """Put ``items[b]`` right after the last real item of row ``b`` (``0`` appends nothing), dropping the oldest
        item of rows that would outgrow ``max_history_length``. Returns the new ids and each row's last position."""
        extended = F.pad(input_ids, (0, 1))
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        extended[rows, lengths] = items
        last = lengths - (items == 0).long()
        if extended.shape[1] > self.config.max_history_length:
            full = last == extended.shape[1] - 1
            extended = torch.where(full[:, None], extended[:, 1:], extended[:, :-1])
            last = last - full.long()
        return extended, last

    def _encode(self, input_ids: torch.Tensor, item_rows, user_token: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states ``[batch, length, hidden_size]`` of ids that may hold the mask token; ``item_rows(ids)``
        gives the item-table rows of real item ids. A ``user_token`` ``[batch, hidden_size]`` is read before the
        first item; its output is left out."""
        is_mask = (input_ids == self.mask_token_id)[..., None]
        items = torch.where(is_mask, self.mask_embedding.weight[0], item_rows(input_ids.masked_fill(is_mask[..., 0], 0)))
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        embedded, attended = items + self.position_embeddings(positions), input_ids != 0
        if user_token is not None:  # attended both ways, as every item
            user_token = user_token + self.user_position_embedding.weight[0]
            embedded = torch.cat([user_token[:, None], embedded], dim=1)
            attended = F.pad(attended, (1, 0), value=True)
        hidden = self.dropout(self.embedding_norm(embedded))
        attention_mask = attended[:, None, None, :]
        for layer in self.layers:
            hidden = layer(hidden, attention_mask)
        return hidden if user_token is None else hidden[:, 1:]

    # Copied from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec.LamarSASRecModel._user_token
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

    # Copied from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec.LamarSASRecModel._fuses_only_the_rows_read
    def _fuses_only_the_rows_read(self, input_ids, labels) -> bool:
        """Whether a training step of a sampled loss fuses only the item rows it reads (inputs, targets, negatives)
        rather than the whole table once: only while those rows are fewer than the table's (negatives drawn per
        position or per sequence soon outnumber the items, and fusing each drawn row would cost more)."""
        if not (self.training and labels is not None and self.config.loss_type != "ce"):
            return False
        draws = {"batch": 1, "sequence": input_ids.shape[0]}.get(self.config.negative_sharing, input_ids.numel())
        return 2 * input_ids.numel() + draws * self.config.num_negatives < self.config.num_items + 1

    # Copied from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec.LamarSASRecModel._sampled_loss
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

    # Copied from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec.LamarSASRecModel._draw_negatives
    def _draw_negatives(self, shape: tuple[int, ...], device) -> torch.Tensor:
        """Item ids of ``shape`` drawn with replacement from items 1..num_items (never padding), uniformly or, with
        ``negative_sampling="popularity"``, in proportion to the training counts."""
        if self.config.negative_sampling == "popularity":
            probabilities = self._draw_log_probabilities().exp()
            return torch.multinomial(probabilities, math.prod(shape), replacement=True).view(shape)
        return torch.randint(1, self.config.num_items + 1, shape, device=device)

    # Copied from lamar_hf.models.lamar_sasrec.modeling_lamar_sasrec.LamarSASRecModel._check_histories
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

        Each history lists item ids oldest first; only its most recent ``max_history_length - 1`` items are read
        (the mask token whose prediction is the score takes the last position).
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
        giving one list per history. Only the most recent ``max_history_length - 1`` items of a history are read
        (see :meth:`score`). With ``exclude_history=True`` items already in the history are never recommended. A
        model with a user token needs ``user_embeddings``: the user's text embedding ``[user_text_embedding_dim]``
        for one history, one row per history for a list.

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
