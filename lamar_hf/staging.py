"""Replace a folder so that no kill leaves it missing or half-written, and clean up after kills.

The new folder is written to a hidden sibling, the old one renamed aside, the new one renamed in,
then the old one deleted. Hidden siblings are named ``<prefix><kind>-<pid>-<random>`` after the
process that made them: :func:`recover_folder` (run first by every later write) removes those of
processes that are gone, and puts the aside copy back when a kill came between the two renames.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

logger = logging.getLogger(__name__)

NEW, OLD = "tmp", "old"


def staging_path(parent, prefix: str, kind: str = NEW) -> Path:
    """A hidden sibling path for this process: ``parent/<prefix><kind>-<pid>-<random>``."""
    return Path(parent) / f"{prefix}{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _owner_is_running(name: str, prefix: str) -> bool:
    try:
        pid = int(name[len(prefix):].split("-")[1])
    except (IndexError, ValueError):
        return False  # named by an older version, which wrote no pid: nobody writes it any more
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def recover_folder(target, prefix: str, complete=lambda folder: True) -> None:
    """After a kill: put back the copy of ``target`` that a swap had set aside (when ``target`` is
    missing and ``complete(copy)`` holds), and remove the hidden ``<prefix>tmp-*`` / ``<prefix>old-*``
    siblings of processes that are no longer running."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    stale = [path for kind in (NEW, OLD) for path in target.parent.glob(f"{prefix}{kind}-*")
             if path.is_dir() and not _owner_is_running(path.name, prefix)]
    if not target.exists():
        aside = [path for path in stale if path.name.startswith(f"{prefix}{OLD}-") and complete(path)]
        if aside:
            newest = max(aside, key=lambda path: path.stat().st_mtime)
            newest.rename(target)
            stale.remove(newest)
            logger.warning("%s: put back the copy that an interrupted write had set aside (%s)", target, newest.name)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)


def swap_in(staging, target, prefix: str) -> None:
    """Make the finished folder ``staging`` the new ``target`` (the old one, if any, is deleted)."""
    staging, target = Path(staging), Path(target)
    if target.exists():
        aside = staging_path(target.parent, prefix, OLD)
        target.rename(aside)
        staging.rename(target)
        shutil.rmtree(aside)
    else:
        staging.rename(target)
