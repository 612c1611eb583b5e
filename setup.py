"""Build hook: the wheel carries the top-level ``dataset_cards/`` as ``lamar_hf/dataset_cards``.

``dataset_cards/`` stays the one source of truth at the top of the repository (the project's layout); a
source checkout reads it in place and an installed wheel reads the copy made here. Everything else about
the package is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATASET_CARDS = Path(__file__).resolve().parent / "dataset_cards"


class BuildPyWithDatasetCards(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:  # an editable install reads dataset_cards/ in place
            self.copy_tree(str(DATASET_CARDS), str(Path(self.build_lib) / "lamar_hf" / "dataset_cards"))


setup(cmdclass={"build_py": BuildPyWithDatasetCards})
