"""Versioned releases on the Hub: one commit per version, tagged ``vMAJOR.MINOR.PATCH``, tags never moved.

A release is published in four steps: read what the repository already holds (its tags and the
changelog of the last release), refuse a version that is already tagged, build the repository tree
in a staging folder, then either push that exact tree as one commit and tag it, or, for a dry run,
copy it to a local folder.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx2  # huggingface_hub's HTTP client: its TransportError means the endpoint could not be reached
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .. import __version__

logger = logging.getLogger(__name__)

MANIFEST = "lamar_publish.json"
VERSION_PATTERN = re.compile(r"v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
REPO_ID_PATTERN = re.compile(r"[\w.-]+/[\w.-]+")


class PublishError(ValueError):
    """A release that cannot be published as asked (a bad version or repo id, bad input files, ...)."""


class VersionExistsError(PublishError):
    """The version is already tagged in the repository; tags are never moved."""


def check_version(version: str) -> str:
    """Return ``version`` if it is ``vMAJOR.MINOR.PATCH`` (e.g. ``v1.0.0``); raise :class:`PublishError` if not."""
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        raise PublishError(f"version {version!r} is not of the form vMAJOR.MINOR.PATCH (for example v1.0.0)")
    return version


@dataclass
class Release:
    """One version of one repository: where it goes, its tag, and what changed since the last one."""

    repo_id: str
    repo_type: str  # "dataset" or "model" (adapters are model repositories)
    version: str
    changes: str = ""
    date: str = field(default_factory=lambda: datetime.date.today().isoformat())

    def __post_init__(self):
        check_version(self.version)
        if not REPO_ID_PATTERN.fullmatch(self.repo_id or ""):
            raise PublishError(f"repo id {self.repo_id!r} is not of the form ORG/NAME")
        if self.repo_type not in ("dataset", "model"):
            raise PublishError(f"repo type {self.repo_type!r} is not 'dataset' or 'model'")

    def changelog(self, history: "RepoHistory") -> list[dict]:
        """This release's changelog entry followed by the earlier ones (newest first)."""
        entry = {"version": self.version, "date": self.date, "changes": self.changes}
        return [entry] + [old for old in history.changelog if old.get("version") != self.version]

    def manifest(self, kind: str, history: "RepoHistory", **details) -> dict:
        """The ``lamar_publish.json`` of this release: what it is, its version, changelog and provenance."""
        return {
            "kind": kind,
            "repo_id": self.repo_id,
            "version": self.version,
            "date": self.date,
            "lamar_hf_version": __version__,
            **details,
            "changelog": self.changelog(history),
        }


@dataclass
class RepoHistory:
    """What the repository already holds: whether it exists, the head of ``main``, its tags, its changelog."""

    exists: bool = False
    head: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # tag name -> commit oid
    changelog: list[dict] = field(default_factory=list)


@dataclass
class PublishResult:
    """The outcome of a release: the tagged commit, or the folder a dry run wrote."""

    repo_id: str
    repo_type: str
    version: str
    files: list[str]
    revision: str | None = None  # the commit oid the version tag points to (None for a dry run)
    url: str | None = None
    dry_run_dir: Path | None = None

    def summary(self) -> str:
        """The lines the command line prints: where the release went and its revision."""
        if self.dry_run_dir is not None:
            return f"dry run: wrote the {len(self.files)} files of {self.repo_id}@{self.version} to {self.dry_run_dir}"
        return f"published {self.repo_type} {self.repo_id}@{self.version}\nrevision {self.revision}\n{self.url}"


def read_history(release: Release, api: HfApi, offline_ok: bool = False) -> RepoHistory:
    """Ask the Hub for the repository's tags, head and changelog.

    With ``offline_ok`` (dry runs), an offline Hub or an unreachable endpoint gives an empty history (with a
    warning) instead of an error.
    """
    try:
        if offline_ok and constants.is_offline_mode():
            raise OfflineModeIsEnabled("HF_HUB_OFFLINE is set")
        refs = api.list_repo_refs(release.repo_id, repo_type=release.repo_type)
    except RepositoryNotFoundError:
        return RepoHistory(exists=False)
    except (OfflineModeIsEnabled, httpx2.TransportError) as error:
        if not offline_ok:
            raise
        logger.warning("could not reach the Hub (%s): the dry run lists only this version in the changelog", error)
        return RepoHistory(exists=False)
    branches = {ref.name: ref.target_commit for ref in refs.branches}
    history = RepoHistory(exists=True, head=branches.get("main"), tags={ref.name: ref.target_commit for ref in refs.tags})
    if history.head is not None:
        try:
            path = api.hf_hub_download(release.repo_id, MANIFEST, repo_type=release.repo_type, revision=history.head)
            history.changelog = json.loads(Path(path).read_text()).get("changelog", [])
        except (EntryNotFoundError, RevisionNotFoundError):
            pass  # a repository lamar-hf has not published to yet
    return history


def refuse_existing_version(release: Release, history: RepoHistory) -> None:
    """Raise :class:`VersionExistsError` if the version is already tagged: tags are never moved."""
    if release.version in history.tags:
        raise VersionExistsError(
            f"{release.repo_id} already has version {release.version} (tag -> commit "
            f"{history.tags[release.version][:12]}); published versions are never moved or overwritten, "
            f"publish a new version instead (for example {next_free_patch(release.version, history.tags)}). "
            "Nothing was pushed."
        )
    newer = [tag for tag in history.tags if VERSION_PATTERN.fullmatch(tag) and version_key(tag) > version_key(release.version)]
    if newer:
        logger.warning("%s is older than the latest version %s of %s; it is published as a fix of an older line",
                       release.version, max(newer, key=version_key), release.repo_id)


def version_key(version: str) -> tuple[int, int, int]:
    return tuple(int(part) for part in VERSION_PATTERN.fullmatch(version).groups())


def next_free_patch(version: str, tags) -> str:
    """The patch version after the highest tagged one of ``version``'s MAJOR.MINOR line."""
    major, minor, patch = version_key(version)
    line = [version_key(tag)[2] for tag in tags if VERSION_PATTERN.fullmatch(tag) and version_key(tag)[:2] == (major, minor)]
    return f"v{major}.{minor}.{max(line + [patch]) + 1}"


def staged_files(folder: Path) -> list[str]:
    """Every file under ``folder`` as a repository path (``/``-separated), sorted."""
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def publish(
    release: Release,
    build: Callable[[Path, RepoHistory], None],
    dry_run: str | Path | None = None,
    api: HfApi | None = None,
) -> PublishResult:
    """Publish one release: ``build(stage, history)`` writes the repository tree into the folder ``stage``.

    The version is checked against the repository's tags before anything is built or pushed. With
    ``dry_run``, the tree is written to that (new or empty) folder instead of being pushed.

    Raises:
        VersionExistsError: the version is already tagged (nothing is pushed).
        PublishError: a bad version, repo id or dry-run folder, or a tag created concurrently.
    """
    api = api or HfApi()
    if dry_run is not None:
        dry_run = Path(dry_run)
        if dry_run.exists() and (not dry_run.is_dir() or any(dry_run.iterdir())):
            raise PublishError(f"dry-run folder {dry_run} exists and is not empty")
    history = read_history(release, api, offline_ok=dry_run is not None)
    refuse_existing_version(release, history)
    with tempfile.TemporaryDirectory(prefix="lamar-publish-") as tmp:
        stage = Path(tmp) / "repo"
        stage.mkdir()
        build(stage, history)
        files = staged_files(stage)
        if dry_run is not None:
            shutil.copytree(stage, dry_run, dirs_exist_ok=True)
            return PublishResult(release.repo_id, release.repo_type, release.version, files, dry_run_dir=dry_run)
        revision = push_tree(stage, files, release, history, api)
    prefix = "" if release.repo_type == "model" else f"{release.repo_type}s/"
    url = f"{api.endpoint}/{prefix}{release.repo_id}/tree/{release.version}"
    return PublishResult(release.repo_id, release.repo_type, release.version, files, revision=revision, url=url)


def push_tree(stage: Path, files: list[str], release: Release, history: RepoHistory, api: HfApi) -> str:
    """Make the repository's ``main`` exactly the staged tree in one commit, tag it, return the commit oid."""
    repo_id, repo_type = release.repo_id, release.repo_type
    head = history.head
    if not history.exists:
        api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
        head = api.repo_info(repo_id, repo_type=repo_type).sha
    remote = set(api.list_repo_files(repo_id, repo_type=repo_type, revision=head)) if head else set()
    operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(stage / path)) for path in files]
    # Files of the previous release that this one no longer has: the tagged tree must be exactly the staged one.
    operations += [CommitOperationDelete(path_in_repo=path) for path in sorted(remote - set(files) - {".gitattributes"})]
    logger.info("pushing %d files to %s (%s) ...", len(files), repo_id, repo_type)
    commit = api.create_commit(
        repo_id,
        operations,
        commit_message=f"Publish {release.version}",
        commit_description=release.changes,
        repo_type=repo_type,
        parent_commit=head,  # fails (412) if someone pushed to main meanwhile
    )
    try:
        api.create_tag(
            repo_id, tag=release.version, revision=commit.oid, repo_type=repo_type,
            tag_message=f"{release.version}: {release.changes or 'release'}",
        )
    except HfHubHTTPError as error:
        if error.response is not None and error.response.status_code == 409:
            raise VersionExistsError(
                f"commit {commit.oid} was pushed to {repo_id}, but tag {release.version} was created by someone else "
                "meanwhile and was left untouched; publish this content as a new version"
            ) from error
        raise
    return commit.oid
