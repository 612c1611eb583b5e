"""Publish a trained recommender folder (written by save_pretrained, with its remote code) as a tagged version.

    python push_scripts/push_model.py outputs/sasrec --repo-id org/lamar-sasrec-beauty --version v1.0.0 \
        --eval-results outputs/sasrec/test_results.json \
        --dataset org/lamar-beauty-enriched --dataset-revision v1.0.0
    python push_scripts/push_model.py outputs/sasrec --repo-id org/lamar-sasrec-beauty --version v1.0.0 \
        --dry-run outputs/hub-model-tree

The same as `lamar publish model ...`; `--help` lists every option. Users then load the model with
`AutoModel.from_pretrained("org/lamar-sasrec-beauty", trust_remote_code=True, revision="v1.0.0")`.
"""

import sys

from lamar_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["publish", "model", *sys.argv[1:]]))
