"""Publish an enriched benchmark folder (items, sequences, signals) to the Hub as a tagged version.

    python push_scripts/push_dataset.py outputs/beauty --repo-id org/lamar-beauty-enriched --version v1.0.0 \
        --changes "first release" --analysis outputs/beauty/analysis.json
    python push_scripts/push_dataset.py outputs/beauty --repo-id org/lamar-beauty-enriched --version v1.0.0 \
        --dry-run outputs/hub-tree      # write the exact repository tree locally instead

The same as `lamar publish dataset ...`; `--help` lists every option. An existing version is refused
before anything is pushed; the script prints the revision (commit sha) the new tag points to.
"""

import sys

from lamar_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["publish", "dataset", *sys.argv[1:]]))
