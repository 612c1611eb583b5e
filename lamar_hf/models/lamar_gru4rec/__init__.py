"""Signal-aware GRU4Rec (``model_type="lamar_gru4rec"``)."""

from .configuration_lamar_gru4rec import FUSION_MODES, LOSS_TYPES, LamarGRU4RecConfig
from .modeling_lamar_gru4rec import LamarGRU4RecModel, LamarGRU4RecOutput

__all__ = ["FUSION_MODES", "LOSS_TYPES", "LamarGRU4RecConfig", "LamarGRU4RecModel", "LamarGRU4RecOutput"]
