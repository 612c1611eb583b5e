"""The lamar-hf recommenders, registered with ``AutoConfig`` / ``AutoModel`` on import.

After ``import lamar_hf.models`` a saved model loads with plain ``AutoModel.from_pretrained(path)``; a saved
model also carries its code (``auto_map`` in ``config.json``), so ``trust_remote_code=True`` loads it in a
process that never imported lamar_hf.
"""

from transformers import AutoConfig, AutoModel

from .lamar_sasrec import LamarSASRecConfig, LamarSASRecModel

AutoConfig.register(LamarSASRecConfig.model_type, LamarSASRecConfig, exist_ok=True)
AutoModel.register(LamarSASRecConfig, LamarSASRecModel, exist_ok=True)
LamarSASRecConfig.register_for_auto_class()
LamarSASRecModel.register_for_auto_class("AutoModel")

__all__ = ["LamarSASRecConfig", "LamarSASRecModel"]
