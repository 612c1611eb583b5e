"""Publish a LoRA signal-generator adapter folder (written by peft's save_pretrained) as a tagged version.

    python push_scripts/push_adapter.py outputs/generator-lora --repo-id org/lamar-smollm2-signals-lora \
        --version v1.0.0 --base-model HuggingFaceTB/SmolLM2-135M-Instruct
    python push_scripts/push_adapter.py outputs/generator-lora --repo-id org/lamar-smollm2-signals-lora \
        --version v1.0.0 --base-model HuggingFaceTB/SmolLM2-135M-Instruct --dry-run outputs/hub-adapter-tree

The same as `lamar publish adapter ...`; `--help` lists every option. Users then load the adapter with
`PeftModel.from_pretrained(base_model, "org/lamar-smollm2-signals-lora", revision="v1.0.0")`.
"""

import sys

from lamar_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["publish", "adapter", *sys.argv[1:]]))
