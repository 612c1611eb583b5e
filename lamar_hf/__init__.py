"""lamar-hf: LLM-driven semantic enrichment for sequential recommendation (LaMAR), the Hugging Face way."""

__version__ = "0.1.0"
