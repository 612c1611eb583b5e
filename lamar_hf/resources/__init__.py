"""Data files shipped with lamar-hf: fixed few-shot exemplars and generated signals."""
