"""Signal-aware SASRec (``model_type="lamar_sasrec"``)."""

from .configuration_lamar_sasrec import FUSION_MODES, LOSS_TYPES, LamarSASRecConfig
from .modeling_lamar_sasrec import LamarSASRecModel, LamarSASRecOutput

__all__ = ["FUSION_MODES", "LOSS_TYPES", "LamarSASRecConfig", "LamarSASRecModel", "LamarSASRecOutput"]
