"""The lamar-hf recommenders, registered with ``AutoConfig`` / ``AutoModel`` on import.

After ``import lamar_hf.models`` a saved model loads with plain ``AutoModel.from_pretrained(path)``; a saved
model also carries its code (``auto_map`` in ``config.json``), so ``trust_remote_code=True`` loads it in a
process that never imported lamar_hf.
"""

from transformers import AutoConfig, AutoModel

from .lamar_bert4rec import LamarBERT4RecConfig, LamarBERT4RecModel
from .lamar_gru4rec import LamarGRU4RecConfig, LamarGRU4RecModel
from .lamar_sasrec import LamarSASRecConfig, LamarSASRecModel

for config_class, model_class in (
    (LamarSASRecConfig, LamarSASRecModel),
    (LamarGRU4RecConfig, LamarGRU4RecModel),
    (LamarBERT4RecConfig, LamarBERT4RecModel),
):
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    config_class.register_for_auto_class()
    model_class.register_for_auto_class("AutoModel")

__all__ = [
    "LamarBERT4RecConfig",
    "LamarBERT4RecModel",
    "LamarGRU4RecConfig",
    "LamarGRU4RecModel",
    "LamarSASRecConfig",
    "LamarSASRecModel",
]
