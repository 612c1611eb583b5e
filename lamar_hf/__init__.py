"""lamar-hf: LLM-driven semantic enrichment for sequential recommendation (LaMAR), the Hugging Face way.

Importing the package registers its recommenders with ``AutoConfig`` / ``AutoModel``, so a saved lamar-hf model
loads with plain ``AutoModel.from_pretrained(path)`` after ``import lamar_hf``.
"""

__version__ = "0.1.0"

from . import models  # noqa: E402,F401  (registers the Auto classes)
