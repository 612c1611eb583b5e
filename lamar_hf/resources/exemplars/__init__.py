"""Fixed few-shot exemplar files (jsonl), one per benchmark."""
