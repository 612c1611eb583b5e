"""Signal-aware BERT4Rec (``model_type="lamar_bert4rec"``)."""

from .configuration_lamar_bert4rec import FUSION_MODES, LOSS_TYPES, LamarBERT4RecConfig
from .modeling_lamar_bert4rec import LamarBERT4RecModel, LamarBERT4RecOutput

__all__ = ["FUSION_MODES", "LOSS_TYPES", "LamarBERT4RecConfig", "LamarBERT4RecModel", "LamarBERT4RecOutput"]
