"""The one schema every benchmark reader produces (see DESIGN.md, "Data schema").

- config ``items`` (one split, ``train``): one row per item, ``item_id`` 1..N (0 is padding).
- config ``sequences``, splits ``train`` / ``validation`` / ``test`` by leave-one-out. Every row is
  ``user_id``, ``history`` (items in chronological order) and ``target`` (the next item):
  ``test`` predicts a user's last item from all before it, ``validation`` the one before from the
  items before that, and ``train`` the third-to-last item from the rest, so that
  ``history + [target]`` of the ``train`` split is exactly the user's training sequence. The Amazon Reviews 2023
  ``timestamp`` split (:func:`lamar_hf.data.splits.timestamp_split`) keeps that ``train`` row but has one
  ``validation`` / ``test`` row per interaction of those periods; its ``source["split"]`` says so.
"""

from datasets import Features, List, Value

PADDING_ITEM_ID = 0

ITEM_FEATURES = Features(
    {
        "item_id": Value("int32"),
        "asin": Value("string"),
        "title": Value("string"),
        "brand": Value("string"),
        "categories": List(Value("string")),
        "price": Value("float64"),
        "description": Value("string"),
    }
)

SEQUENCE_FEATURES = Features(
    {
        "user_id": Value("int32"),
        "history": List(Value("int32")),
        "target": Value("int32"),
    }
)

SEQUENCE_SPLITS = ("train", "validation", "test")

# The metadata fields of ``items`` that carry text for prompts and coverage statistics.
METADATA_FIELDS = ("title", "brand", "categories", "price", "description")
