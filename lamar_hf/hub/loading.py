"""Loading a saved recommender from a local folder or a Hub id, with one clear error when that fails.

A name that can only be a path (absolute, ``./``, ``~``, more than one ``/``, or an existing file) is read as a
folder; anything else that is not a folder here is read as a Hub model id. The weights of a local folder are
checked before transformers reads them, so a truncated or corrupt ``model.safetensors`` is reported by its path
rather than as a deserializer traceback.
"""

from __future__ import annotations

import pickle
from pathlib import Path


class ModelLoadError(ValueError):
    """A model that cannot be loaded: a missing folder, a corrupt weights file, an unreachable Hub id."""


def is_local_path(name: str | Path) -> bool:
    """Whether ``name`` can only mean a path on this machine (it cannot be a Hub id ``ORG/NAME`` or ``NAME``)."""
    text = str(name)
    path = Path(text).expanduser()
    return isinstance(name, Path) or path.exists() or path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1


def check_model_weights(folder: str | Path) -> None:
    """Open the header of every ``*.safetensors`` file in ``folder``, which also checks that the data it describes
    is all there (a truncated file fails).

    Raises:
        ModelLoadError: naming the first file that does not read.
    """
    from safetensors import SafetensorError, safe_open

    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as weights:
                weights.keys()
        except (SafetensorError, OSError) as error:
            raise ModelLoadError(f"{path}: the weights file is truncated or corrupt ({error}); save or download it again") from None


def load_recommender(name_or_path: str | Path, *, revision: str | None = None, trust_remote_code: bool = False):
    """``AutoModel.from_pretrained`` of a lamar-hf recommender folder (written by ``save_pretrained`` / ``lamar
    train``) or Hub model id.

    Raises:
        ModelLoadError: a local path that is not a folder, a corrupt weights file, or a name that is neither a
            folder here nor a Hub model that could be loaded (the first line of the Hub's answer is kept).
    """
    from safetensors import SafetensorError
    from transformers import AutoModel

    import lamar_hf.models  # noqa: F401  (registers the recommenders with AutoModel)

    path = Path(str(name_or_path)).expanduser()
    if path.is_dir():
        check_model_weights(path)
    elif path.exists():
        raise ModelLoadError(f"{name_or_path} is a file, not a model folder (a folder written by `lamar train` or save_pretrained)")
    elif is_local_path(name_or_path):
        raise ModelLoadError(f"model folder not found: {name_or_path} (a folder written by `lamar train` or save_pretrained)")
    try:
        return AutoModel.from_pretrained(str(path) if path.is_dir() else str(name_or_path), revision=revision,
                                         trust_remote_code=trust_remote_code)
    except SafetensorError as error:  # a file fetched from the Hub (the local ones were checked above)
        raise ModelLoadError(f"{name_or_path}: a weights file is truncated or corrupt ({error})") from None
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:  # e.g. a damaged pytorch_model.bin
        if path.is_dir():
            raise ModelLoadError(f"{path}: the model does not load ({first_line(error)})") from None
        if not isinstance(error, OSError):
            raise
        raise ModelLoadError(f"{name_or_path} is not a folder here, and loading it as a Hub model failed: {first_line(error)}") from None


def first_line(error: Exception) -> str:
    """The first line of an error message (library errors often add a paragraph of advice), or its type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
