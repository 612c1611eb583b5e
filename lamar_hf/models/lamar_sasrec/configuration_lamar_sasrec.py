"""Configuration of the signal-aware SASRec recommender (self-contained: transformers only)."""

from transformers import PretrainedConfig

FUSION_MODES = ("none", "add", "concat", "gate", "init", "semantic_nullspace", "multiview")
LOSS_TYPES = ("ce", "bce", "sampled_softmax", "gbce")
NEGATIVE_SAMPLING = ("uniform", "popularity")
NEGATIVE_SHARING = ("position", "sequence", "batch")
POSITION_ORDERS = ("from_start", "from_end")
HIDDEN_ACTIVATIONS = ("gelu", "relu")
INITIALIZATIONS = ("normal", "xavier_normal")


class LamarSASRecConfig(PretrainedConfig):
    r"""Hyper-parameters of [`LamarSASRecModel`].

    Items are numbered 1..``num_items``; id 0 is padding. With ``fusion="none"`` the model is the ID-only SASRec;
    otherwise each item's texts (``text_kinds``, e.g. ``["scenario", "intent", "topic", "metadata"]``), embedded
    once by a frozen sentence encoder into ``text_embedding_dim`` numbers each, are projected to ``hidden_size``
    and fused with the item-id embedding: ``add`` sums them, ``concat`` maps the concatenation back to
    ``hidden_size``, ``gate`` mixes them with a learned per-dimension gate. Three more fusions use the texts
    otherwise (``init``, ``semantic_nullspace``, ``multiview``: see ``fusion`` below).

    Args:
        num_items: number of real items (the item table has ``num_items + 1`` rows).
        hidden_size: width of item embeddings and of the transformer.
        num_hidden_layers: number of causal self-attention blocks.
        num_attention_heads: attention heads per block (must divide ``hidden_size``).
        intermediate_size: width of the position-wise feed-forward layer.
        hidden_act: its activation, ``"gelu"`` (default) or ``"relu"`` (the SASRec authors').
        max_history_length: longest history the model reads; longer ones keep their most recent items.
        position_order: how the learned position embeddings count: ``"from_start"`` (default; the oldest item is
            position 0, so a position never depends on later items) or ``"from_end"`` (the most recent item is
            position 0, so every history's last item, the one recommendations are made from, has the same
            position; RecTools' inverse positions). With ``"from_end"`` the positions of a training sequence tell
            each position how many items follow it (not which).
        hidden_dropout_prob: dropout on embeddings and on every block's outputs.
        attention_dropout_prob: dropout on attention weights.
        item_dropout_prob: dropout on the item-table rows a training step reads, on the input side and on the scored
            side (targets, negatives, or the whole table for ``"ce"``), as RecTools' item-net dropout; regularises
            the item table, which holds most of the parameters. 0 (default): none.
        layer_norm_eps: epsilon of the layer norms.
        norm_first: pre-norm blocks with a final layer norm (default, as in the original SASRec code), or, with
            ``False``, post-norm blocks after a layer norm on the input embeddings (as in RecBole's SASRec).
        residual_from_norm: with ``norm_first``, the block of the SASRec authors' code (RecTools'
            ``SASRecTransformerLayer``): attention queries read the normalised input but keys and values the input
            itself, each residual sum starts from the normalised input instead of the input, and the attention
            output has no dropout (its weights still do). ``False`` (default): the standard pre-norm block.
        initializer_range: standard deviation of the normal initialisation.
        initialization: ``"normal"`` (default): every weight matrix and embedding starts N(0, ``initializer_range``),
            as transformers initialises; ``"xavier_normal"``: Xavier-normal instead (biases zero, the padding row of
            an embedding zero), as RecTools' SASRec starts every parameter of more than one dimension.
        repeat_bias: learn one score that is added to every item the history already holds, so that the model
            learns how likely a user is to pick an item again. Where no target repeats a history item (Amazon
            Beauty), it learns to rank the history last instead of spending top ranks on the items just read.
        loss_type: ``"ce"`` (softmax cross-entropy over all items), ``"bce"`` (binary cross-entropy against
            ``num_negatives`` uniformly drawn items per position, the original SASRec objective),
            ``"sampled_softmax"`` (softmax cross-entropy over the target and ``num_negatives`` drawn items, the "SS" of
            RecTools' SASRec+SS) or ``"gbce"`` (gSASRec's generalised BCE, Petrov & Macdonald, RecSys 2023, against
            ``num_negatives`` uniform items).
        num_negatives: negatives of each scored position (drawn per position, sequence or batch, see
            ``negative_sharing``).
        negative_sharing: who shares a draw of negatives: ``"position"`` (each scored position draws its own, as
            RecTools' SASRec+SS), ``"sequence"`` (the positions of one sequence share a draw: one
            ``[length, d] x [d, k]`` product per sequence instead of gathering ``k`` item rows per position) or
            ``"batch"`` (one draw for the whole batch: fastest, but each step pushes down only ``k`` items, and on
            Amazon Beauty it learned far more slowly per epoch and stopped lower).
        negative_sampling: how ``sampled_softmax`` draws its negatives: ``"uniform"`` over items 1..``num_items``,
            or ``"popularity"``, in proportion to each item's training count (``set_item_counts``), with the logQ
            correction (the log of an item's draw probability is subtracted from its score as a negative).
        gbce_t: gBCE's calibration in [0, 1]: the target's probability is raised to ``beta = alpha * (gbce_t *
            (1 - 1 / alpha) + 1 / alpha)`` with ``alpha = num_negatives / (num_items - 1)`` (0: plain BCE).
        fusion: how the item texts join the item-id embedding ``e_i``; ``t_i`` is item ``i``'s text embeddings
            concatenated in ``text_kinds`` order:

            - ``"none"``: no texts, ``e_i`` alone (the ID-only model).
            - ``"add"``: ``e_i + W t_i``; ``"concat"``: ``W' [e_i; W t_i]``; ``"gate"``: ``g * e_i + (1 - g) * W t_i``
              with ``g = sigmoid(W'' [e_i; W t_i])`` per dimension.
            - ``"init"``: the texts only initialise the item-id table: :meth:`set_text_embeddings` writes into
              ``e_i`` the projection of ``t_i`` (centred over the real items) onto its first ``hidden_size``
              principal directions (PCA; the remaining columns keep their random start when the texts have fewer),
              scaled as a whole to standard deviation ``initializer_range``. The table then trains freely and the
              texts are not kept: the model is an ID-only model with a semantic start.
            - ``"semantic_nullspace"`` (in the spirit of AlphaFuse, Hu et al., SIGIR 2025): the row is ``[s_i; e_i]``,
              a frozen semantic part ``s_i = (t_i - m) B`` of ``semantic_dims`` numbers (``m`` the mean text, ``B``
              the first ``semantic_dims`` principal directions, scaled so that ``s`` has standard deviation
              ``initializer_range``; computed by :meth:`set_text_embeddings` and kept as buffers) beside a learned
              item-id embedding ``e_i`` of ``hidden_size - semantic_dims`` numbers. In the coordinates of the
              texts' principal directions, the IDs learn in the complement (null space) of the semantic subspace,
              which training never moves.
            - ``"multiview"``: each text kind is a view with a projection of its own, ``v_ik = W_k t_ik``; the row is
              ``e_i + sum_k a_ik v_ik`` with attention weights ``a_i = softmax_k((Q e_i) . v_ik / sqrt(hidden_size))``
              queried by the item-id embedding, so each item learns how much of each view to use (needs at least
              two ``text_kinds``).
        text_kinds: names of the embedded item texts, in the order of the model's ``text_embeddings`` buffer.
        text_embedding_dim: size of one text embedding (384 for all-MiniLM-L6-v2).
        text_encoder: the sentence encoder that made the text embeddings (provenance only).
        semantic_dims: ``fusion="semantic_nullspace"`` only: width of the frozen semantic part, in
            ``1..hidden_size - 1`` and at most the texts' total width (default ``hidden_size // 2``).
        attribute_kinds: names of categorical item attributes learned as embeddings, as RecBole's SASRecF does
            (e.g. ``["scenario_cluster", "intent_cluster", "topic_cluster"]``; empty: none). Each kind has an
            embedding table of its own; an item's attribute embeddings are summed into its item-id embedding
            ``e_i`` before the fusion (for ``semantic_nullspace``, into the learned part only), so they work with
            every ``fusion``. Set the ids with ``set_item_attributes``.
        attribute_vocab_sizes: for each of ``attribute_kinds``, how many attribute ids it has: ids run
            ``1..size``, and 0 is "none / unknown" (a zero embedding).
        user_text_embedding_dim: size of a sequence-level user text embedding (e.g. a sentence embedding of the
            user's written shopping intent), projected to ``hidden_size`` and put, with a learned position embedding
            of its own, before the first item as one more input token; outputs, labels and scores stay those of
            the item positions. 0 (default): none. With it, ``forward``, ``score`` and ``recommend`` need
            ``user_embeddings``.
    """

    model_type = "lamar_sasrec"

    def __init__(
        self,
        num_items: int = 0,
        hidden_size: int = 64,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 2,
        intermediate_size: int = 256,
        max_history_length: int = 50,
        position_order: str = "from_start",
        hidden_dropout_prob: float = 0.5,
        attention_dropout_prob: float = 0.5,
        item_dropout_prob: float = 0.0,
        layer_norm_eps: float = 1e-8,
        norm_first: bool = True,
        residual_from_norm: bool = False,
        hidden_act: str = "gelu",
        initializer_range: float = 0.02,
        initialization: str = "normal",
        repeat_bias: bool = False,
        loss_type: str = "ce",
        num_negatives: int = 1,
        negative_sharing: str = "position",
        negative_sampling: str = "uniform",
        gbce_t: float = 0.75,
        fusion: str = "none",
        text_kinds: list[str] | tuple[str, ...] = (),
        text_embedding_dim: int = 384,
        text_encoder: str = "sentence-transformers/all-MiniLM-L6-v2",
        semantic_dims: int | None = None,
        attribute_kinds: list[str] | tuple[str, ...] = (),
        attribute_vocab_sizes: list[int] | tuple[int, ...] = (),
        user_text_embedding_dim: int = 0,
        **kwargs,
    ):
        if fusion not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {', '.join(FUSION_MODES)}, got {fusion!r}")
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}")
        if negative_sampling not in NEGATIVE_SAMPLING:
            raise ValueError(f"negative_sampling must be one of {', '.join(NEGATIVE_SAMPLING)}, got {negative_sampling!r}")
        if negative_sharing not in NEGATIVE_SHARING:
            raise ValueError(f"negative_sharing must be one of {', '.join(NEGATIVE_SHARING)}, got {negative_sharing!r}")
        if negative_sampling == "popularity" and loss_type != "sampled_softmax":
            raise ValueError(
                f"negative_sampling='popularity' (with its logQ correction) needs loss_type='sampled_softmax', got {loss_type!r}"
            )
        if loss_type != "ce" and num_negatives < 1:
            raise ValueError(f"loss_type={loss_type!r} needs num_negatives of at least 1, got {num_negatives}")
        if not 0 <= gbce_t <= 1:
            raise ValueError(f"gbce_t must be in [0, 1], got {gbce_t}")
        text_kinds = list(text_kinds)
        if fusion != "none" and not text_kinds:
            raise ValueError(f"fusion={fusion!r} needs at least one entry in text_kinds")
        if len(set(text_kinds)) != len(text_kinds):
            raise ValueError(f"text_kinds names a text twice: {text_kinds}")
        if fusion == "multiview" and len(text_kinds) < 2:
            raise ValueError(
                f"fusion='multiview' weighs text kinds against each other and needs at least two, got {text_kinds} "
                "(with one text, use 'add')"
            )
        if fusion == "semantic_nullspace":
            text_width = len(text_kinds) * text_embedding_dim
            semantic_dims = hidden_size // 2 if semantic_dims is None else semantic_dims
            if not 1 <= semantic_dims <= min(hidden_size - 1, text_width):
                raise ValueError(
                    f"semantic_dims must be in 1..{min(hidden_size - 1, text_width)} (below hidden_size {hidden_size}, "
                    f"at most the texts' width {text_width}), got {semantic_dims}"
                )
        elif semantic_dims:
            raise ValueError(f"semantic_dims applies only to fusion='semantic_nullspace', not {fusion!r}")
        attribute_kinds, attribute_vocab_sizes = list(attribute_kinds), list(attribute_vocab_sizes)
        if len(attribute_kinds) != len(attribute_vocab_sizes):
            raise ValueError(
                f"attribute_kinds ({len(attribute_kinds)}) and attribute_vocab_sizes ({len(attribute_vocab_sizes)}) "
                "need one entry per attribute"
            )
        if len(set(attribute_kinds)) != len(attribute_kinds):
            raise ValueError(f"attribute_kinds names an attribute twice: {attribute_kinds}")
        if not all(isinstance(kind, str) and kind for kind in attribute_kinds):
            raise ValueError(f"attribute_kinds must be non-empty names, got {attribute_kinds}")
        if not all(isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in attribute_vocab_sizes):
            raise ValueError(f"attribute_vocab_sizes must be positive integers, got {attribute_vocab_sizes}")
        if type(user_text_embedding_dim) is not int or user_text_embedding_dim < 0:  # bool is an int, but no width
            raise ValueError(
                f"user_text_embedding_dim must be a non-negative integer (0: no user token), got {user_text_embedding_dim!r}"
            )
        if position_order not in POSITION_ORDERS:
            raise ValueError(f"position_order must be one of {POSITION_ORDERS}, got {position_order!r}")
        if not 0 <= item_dropout_prob < 1:
            raise ValueError(f"item_dropout_prob must be in [0, 1), got {item_dropout_prob}")
        if residual_from_norm and not norm_first:
            raise ValueError("residual_from_norm is a pre-norm block layout: it needs norm_first=True")
        if hidden_act not in HIDDEN_ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {', '.join(HIDDEN_ACTIVATIONS)}, got {hidden_act!r}")
        if initialization not in INITIALIZATIONS:
            raise ValueError(f"initialization must be one of {', '.join(INITIALIZATIONS)}, got {initialization!r}")
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}")
        self.num_items = num_items
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_history_length = max_history_length
        self.position_order = position_order
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_dropout_prob = attention_dropout_prob
        self.item_dropout_prob = item_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.norm_first = norm_first
        self.residual_from_norm = residual_from_norm
        self.hidden_act = hidden_act
        self.initializer_range = initializer_range
        self.initialization = initialization
        self.repeat_bias = repeat_bias
        self.loss_type = loss_type
        self.num_negatives = num_negatives
        self.negative_sharing = negative_sharing
        self.negative_sampling = negative_sampling
        self.gbce_t = gbce_t
        self.fusion = fusion
        # With fusion "none" no texts are used, whatever was asked.
        self.text_kinds = text_kinds if fusion != "none" else []
        self.text_embedding_dim = text_embedding_dim
        self.text_encoder = text_encoder
        self.semantic_dims = semantic_dims if fusion == "semantic_nullspace" else 0
        self.attribute_kinds = attribute_kinds
        self.attribute_vocab_sizes = attribute_vocab_sizes
        self.user_text_embedding_dim = user_text_embedding_dim
        super().__init__(**kwargs)
