"""A local, in-memory, Hugging Face Hub-compatible HTTP server for the end-to-end publishing tests.

Standard library only. It speaks the part of the Hub protocol that the real clients use to create
repositories, upload (regular files inline, large/binary files through git-LFS), commit, tag, branch
and read back files (huggingface_hub 2.4, datasets 5.2, transformers 5.24, peft 0.21)::

    server = HubServer()            # 127.0.0.1, a free port
    server.start()
    os.environ["HF_ENDPOINT"] = server.url   # in a fresh process, before importing the clients
    ...
    server.stop()

Every commit is kept, so tags and old revisions stay readable. Write endpoints need an
``Authorization: Bearer ...`` header (any token); reads are anonymous. ``server.requests`` records
``(method, path)`` of every request, which lets tests check that nothing was pushed.

Run it by hand with ``python tests/hub_server.py [PORT]``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}

# The .gitattributes the Hub writes into every new repository: these files are stored with git-LFS.
LFS_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gguf *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy "
    "*.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors *.tar *.tflite *.tgz *.wasm "
    "*.xz *.zip *.zst *tfevents*"
).split()
GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS).encode()
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024


class HubError(Exception):
    """An error answered as JSON ``{"error": message}`` with the Hub's ``X-Error-Code`` header."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass(frozen=True)
class Blob:
    """A file's content; ``lfs`` files are stored as a git-LFS pointer whose target is ``sha256``."""

    content: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.content)}\n".encode()

    @property
    def git_oid(self) -> str:
        """The git blob sha1 (of the pointer for LFS files), as the Hub reports it in ``oid`` / ``blobId``."""
        data = self.pointer if self.lfs else self.content
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid

    def entry(self, path: str) -> dict:
        """The ``tree`` / ``paths-info`` entry of this file."""
        entry = {"type": "file", "oid": self.git_oid, "size": len(self.content), "path": path}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.content), "pointerSize": len(self.pointer)}
        return entry


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    date: str
    files: dict  # path -> Blob


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    created: str
    commits: dict = field(default_factory=dict)  # oid -> Commit
    branches: dict = field(default_factory=dict)  # name -> oid
    tags: dict = field(default_factory=dict)  # name -> oid

    def resolve(self, revision: str) -> Commit:
        """The commit a branch, tag or (full or 7+ character) commit oid names."""
        revision = revision.removeprefix("refs/heads/").removeprefix("refs/tags/")
        oid = self.branches.get(revision) or self.tags.get(revision)
        if oid is None and re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [known for known in self.commits if known.startswith(revision)]
            oid = matches[0] if len(matches) == 1 else None
        if oid is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return self.commits[oid]

    def url(self, base: str) -> str:
        return f"{base}/{URL_PREFIX[self.repo_type]}{self.repo_id}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _folder_entries(files: dict, folder: str, recursive: bool) -> list[dict]:
    """The ``tree`` listing of ``folder`` ("" is the root): files and sub-folders, sorted by path."""
    prefix = f"{folder}/" if folder else ""
    entries, folders = {}, {}
    for path, blob in files.items():
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        for depth in range(1, len(parts)):
            sub = prefix + "/".join(parts[:depth])
            folders.setdefault(sub, []).append(path)
            if not recursive:
                break
        if recursive or len(parts) == 1:
            entries[path] = blob.entry(path)
    for sub, paths in folders.items():
        digest = hashlib.sha1("\n".join(sorted(f"{p} {files[p].git_oid}" for p in paths)).encode()).hexdigest()
        entries[sub] = {"type": "directory", "oid": digest, "size": 0, "path": sub}
    return [entries[path] for path in sorted(entries)]


class HubState:
    """Every repository and every uploaded LFS object, shared by the request threads."""

    def __init__(self):
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self._counter = 0

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def create_repo(self, repo_type: str, repo_id: str) -> Repo:
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, f"You already created this {repo_type} repo")
            repo = Repo(repo_type, repo_id, created=_now())
            self.repos[(repo_type, repo_id)] = repo
            self.commit(repo, "main", "initial commit", "", {".gitattributes": Blob(GITATTRIBUTES, lfs=False)})
            return repo

    def commit(self, repo: Repo, branch: str, title: str, message: str, files: dict) -> Commit:
        with self.lock:
            parent = repo.branches.get(branch)
            self._counter += 1
            seed = f"{repo.repo_id}\n{parent}\n{title}\n{self._counter}\n{sorted((p, b.git_oid) for p, b in files.items())}"
            commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, title, message, _now(), dict(files))
            repo.commits[commit.oid] = commit
            repo.branches[branch] = commit.oid
            return commit

    def upload_mode(self, files: dict, path: str, size: int, sample: bytes) -> str:
        attributes = files.get(".gitattributes")
        patterns = LFS_PATTERNS if attributes is None else [
            line.split()[0] for line in attributes.content.decode(errors="replace").splitlines()
            if "filter=lfs" in line and line.split()
        ]
        name = path.rsplit("/", 1)[-1]
        matched = any(re.fullmatch(_glob_to_regex(pattern), name) for pattern in patterns)
        return "lfs" if matched or size > LFS_SIZE_THRESHOLD or b"\0" in sample else "regular"


def _glob_to_regex(pattern: str) -> str:
    return "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)


class HubRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    # -- plumbing ---------------------------------------------------------------------------------

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if self.server.verbose:
            sys.stderr.write("hub_server: " + format % args + "\n")

    @property
    def state(self) -> HubState:
        return self.server.state

    @property
    def base_url(self) -> str:
        return f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json_body(self):
        body = self._body()
        try:
            return json.loads(body or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(400, f"invalid JSON body: {error}") from error

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload, headers: dict | None = None):
        self._send(status, json.dumps(payload).encode(), headers)

    def _require_token(self):
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            raise HubError(401, "Invalid username or password.")

    def _dispatch(self):
        url = urlsplit(self.path)
        self.query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        segments = [unquote(part) for part in url.path.strip("/").split("/")]
        with self.state.lock:
            self.state.requests.append((self.command, url.path))
        try:
            self._route(segments)
        except HubError as error:
            headers = {"X-Error-Code": error.code} if error.code else {}
            headers["X-Error-Message"] = error.message
            self._send_json(error.status, {"error": error.message}, headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    # -- routing ----------------------------------------------------------------------------------

    def _route(self, seg: list[str]):
        method = self.command
        if seg[:2] == ["api", "whoami-v2"]:
            return self._whoami()
        if seg[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create_repo()
        if seg[:3] == ["api", "repos", "delete"] and method == "DELETE":
            return self._delete_repo()
        if seg[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml()
        if seg[:1] == ["lfs-upload"] and method == "PUT":
            return self._lfs_upload(seg[1])
        if seg[:1] == ["api"] and len(seg) >= 4 and seg[1] in REPO_TYPES:
            return self._route_api(REPO_TYPES[seg[1]], f"{seg[2]}/{seg[3]}", seg[4:])
        # /{datasets/|spaces/}{ns}/{name}(.git/info/lfs/objects/batch | /resolve/{rev}/{path})
        repo_type = "model"
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type, seg = REPO_TYPES[seg[0]], seg[1:]
        if len(seg) >= 2 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "batch"]:
            return self._lfs_batch(repo_type, f"{seg[0]}/{seg[1][: -len('.git')]}")
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(repo_type, f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        raise HubError(404, f"no route for {method} {self.path}")

    def _route_api(self, repo_type: str, repo_id: str, rest: list[str]):
        method = self.command
        repo = self.state.repo(repo_type, repo_id)
        action, args = (rest[0], rest[1:]) if rest else ("", [])
        if action == "" and method == "GET":
            return self._repo_info(repo, "main")
        if action == "revision" and method == "GET":
            return self._repo_info(repo, "/".join(args))
        if action == "refs" and method == "GET":
            return self._refs(repo)
        if action == "preupload" and method == "POST":
            return self._preupload(repo, "/".join(args))
        if action == "commit" and method == "POST":
            return self._commit(repo, "/".join(args))
        if action == "tree" and method == "GET":
            return self._tree(repo, args[0], "/".join(args[1:]))
        if action == "paths-info" and method == "POST":
            return self._paths_info(repo, "/".join(args))
        if action == "commits" and method == "GET":
            return self._commits(repo, "/".join(args))
        if action == "tag" and method == "POST":
            return self._create_ref(repo, "tag", args[0])
        if action == "branch" and method == "POST":
            return self._create_ref(repo, "branch", "/".join(args))
        if action in ("tag", "branch") and method == "DELETE":
            return self._delete_ref(repo, action, "/".join(args))
        raise HubError(404, f"no route for {method} {self.path}")

    # -- account and repositories -----------------------------------------------------------------

    def _whoami(self):
        self._require_token()
        self._send_json(200, {
            "type": "user", "id": "0", "name": "tester", "fullname": "Local Tester",
            "orgs": [{"type": "org", "name": "org"}],
            "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}},
        })

    def _create_repo(self):
        self._require_token()
        payload = self._json_body()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or 'tester'}/{payload['name']}"
        try:
            repo = self.state.create_repo(repo_type, repo_id)
        except HubError as error:
            url = self.state.repos[(repo_type, repo_id)].url(self.base_url)
            return self._send_json(error.status, {"error": error.message, "url": url})
        self._send_json(200, {"url": repo.url(self.base_url), "name": repo_id})

    def _delete_repo(self):
        self._require_token()
        payload = self._json_body()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or 'tester'}/{payload['name']}"
        with self.state.lock:
            self.state.repo(repo_type, repo_id)
            del self.state.repos[(repo_type, repo_id)]
        self._send_json(200, {})

    def _repo_info(self, repo: Repo, revision: str):
        commit = repo.resolve(revision)
        siblings = []
        for path in sorted(commit.files):
            blob = commit.files[path]
            sibling = {"rfilename": path, "size": len(blob.content), "blobId": blob.git_oid}
            if blob.lfs:
                sibling["lfs"] = {"sha256": blob.sha256, "size": len(blob.content), "pointerSize": len(blob.pointer)}
            siblings.append(sibling)
        self._send_json(200, {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0], "sha": commit.oid, "lastModified": commit.date,
            "createdAt": repo.created, "private": False, "gated": False, "disabled": False,
            "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
        })

    def _refs(self, repo: Repo):
        def refs(kind: str, names: dict) -> list[dict]:
            return [{"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid} for name, oid in sorted(names.items())]

        self._send_json(200, {
            "branches": refs("heads", repo.branches), "tags": refs("tags", repo.tags), "converts": [], "pullRequests": [],
        })

    def _create_ref(self, repo: Repo, kind: str, name_or_revision: str):
        self._require_token()
        payload = self._json_body()
        with self.state.lock:
            if kind == "tag":
                name, target = payload["tag"], repo.resolve(name_or_revision)
                names = repo.tags
            else:
                name, target = name_or_revision, repo.resolve(payload.get("startingPoint") or "main")
                names = repo.branches
            if name in names or name in (repo.tags if kind == "branch" else repo.branches):
                raise HubError(409, f"Reference already exists: {name}")
            names[name] = target.oid
        self._send_json(200, {"name": name, "targetCommit": target.oid})

    def _delete_ref(self, repo: Repo, kind: str, name: str):
        self._require_token()
        with self.state.lock:
            names = repo.tags if kind == "tag" else repo.branches
            if name not in names:
                raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            del names[name]
        self._send_json(200, {})

    def _validate_yaml(self):
        """Check the front matter's frame; the fields are checked by the clients that read them."""
        payload = self._json_body()
        content = payload.get("content", "")
        errors = []
        if content.startswith("---"):
            lines = content.splitlines()
            closing = [i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---"]
            if not closing:
                errors.append({"message": "The YAML metadata block is not closed with '---'"})
            elif any("\t" in line[: len(line) - len(line.lstrip())] for line in lines[1 : closing[0]]):
                errors.append({"message": "YAML metadata must be indented with spaces, not tabs"})
        warnings = [] if content.startswith("---") else [{"message": "empty or missing yaml metadata in repo card"}]
        self._send_json(400 if errors else 200, {"errors": errors, "warnings": warnings})

    # -- upload -----------------------------------------------------------------------------------

    def _preupload(self, repo: Repo, revision: str):
        self._require_token()
        payload = self._json_body()
        try:
            files = repo.resolve(revision).files
        except HubError:
            files = repo.resolve("main").files  # a branch about to be created starts from main
        answers = []
        for item in payload.get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            mode = self.state.upload_mode(files, item["path"], int(item.get("size", 0)), sample)
            existing = files.get(item["path"])
            oid = None if existing is None else (existing.sha256 if existing.lfs else existing.git_oid)
            answers.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._send_json(200, {"files": answers, "commitOid": repo.resolve("main").oid})

    def _lfs_batch(self, repo_type: str, repo_id: str):
        self._require_token()
        self.state.repo(repo_type, repo_id)
        payload = self._json_body()
        objects = []
        for item in payload.get("objects", []):
            entry = {"oid": item["oid"], "size": int(item["size"]), "authenticated": True}
            if item["oid"] not in self.state.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{self.base_url}/lfs-upload/{item['oid']}", "header": {}}}
            objects.append(entry)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   content_type="application/vnd.git-lfs+json")

    def _lfs_upload(self, oid: str):
        content = self._body()
        if hashlib.sha256(content).hexdigest() != oid:
            raise HubError(400, f"uploaded content does not match sha256 {oid}")
        with self.state.lock:
            self.state.lfs_objects[oid] = content
        self._send(200, b"")

    def _commit(self, repo: Repo, branch: str):
        self._require_token()
        if self.query.get("create_pr"):
            raise HubError(400, "pull requests are not supported by the local hub")
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        with self.state.lock:
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch} (commits go to a branch)", "RevisionNotFound")
            head = repo.resolve(branch)
            files = dict(head.files)
            header = {}
            for line in lines:
                key, value = line.get("key"), line.get("value", {})
                if key == "header":
                    header = value
                    parent = value.get("parentCommit")
                    if parent and not head.oid.startswith(parent):
                        raise HubError(412, f"A commit has happened since. Parent {parent} is not the head {head.oid}")
                elif key == "file":
                    files[value["path"]] = Blob(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    content = self.state.lfs_objects.get(value["oid"])
                    if content is None:
                        raise HubError(422, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                    files[value["path"]] = Blob(content, lfs=True)
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    for path in [path for path in files if path.startswith(prefix)]:
                        del files[path]
                else:
                    raise HubError(400, f"unknown commit operation {key!r}")
            commit = self.state.commit(repo, branch, header.get("summary") or "update", header.get("description") or "", files)
        url = f"{repo.url(self.base_url)}/commit/{commit.oid}"
        self._send_json(200, {"success": True, "commitOid": commit.oid, "commitUrl": url, "pullRequestUrl": None})

    # -- read -------------------------------------------------------------------------------------

    def _tree(self, repo: Repo, revision: str, folder: str):
        commit = repo.resolve(revision)
        recursive = self.query.get("recursive", "false").lower() in ("1", "true")
        folder = folder.strip("/")
        if folder in commit.files:
            raise HubError(404, f"{folder} is a file, not a folder", "EntryNotFound")
        entries = _folder_entries(commit.files, folder, recursive)
        if folder and not entries:
            raise HubError(404, f"Entry not found: {folder}", "EntryNotFound")
        self._send_json(200, entries)

    def _paths_info(self, repo: Repo, revision: str):
        commit = repo.resolve(revision)
        body = self._body().decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body).get("paths", [])
        else:
            paths = parse_qs(body).get("paths", [])
        entries = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                entries.append(commit.files[path].entry(path))
            elif path == "" or any(name.startswith(path + "/") for name in commit.files):
                parent = path.rsplit("/", 1)[0] if "/" in path else ""
                entries.extend(e for e in _folder_entries(commit.files, parent, False) if e["path"] == path)
        self._send_json(200, entries)

    def _commits(self, repo: Repo, revision: str):
        commit, history = repo.resolve(revision), []
        while commit is not None:
            history.append({"id": commit.oid, "title": commit.title, "message": commit.message,
                            "date": commit.date, "authors": [{"user": "tester"}]})
            commit = repo.commits.get(commit.parent) if commit.parent else None
        self._send_json(200, history)

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str):
        repo = self.state.repo(repo_type, repo_id)
        commit = repo.resolve(revision)
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob.etag}"', "Accept-Ranges": "bytes",
                   "Last-Modified": formatdate(usegmt=True)}
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.content))})
        content, status = blob.content, 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match and (match.group(1) or match.group(2)):
            size = len(content)
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:
                start, end = max(size - int(match.group(2)), 0), size - 1
            if start >= size:
                headers["Content-Range"] = f"bytes */{size}"
                return self._send(416, b"", headers, content_type="application/octet-stream")
            content, status = content[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send(status, content, headers, content_type="application/octet-stream")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, state: HubState, verbose: bool):
        self.state, self.verbose = state, verbose
        super().__init__(address, HubRequestHandler)


class HubServer:
    """The local Hub on ``127.0.0.1`` (port 0 picks a free one), served from a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        self.state = HubState()
        self._httpd = _Server((host, port), self.state, verbose)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="hub-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        with self.state.lock:
            return list(self.state.requests)

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.state.repo(repo_type, repo_id)

    def start(self) -> "HubServer":
        self._thread.start()
        return self

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    server = HubServer(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0, verbose=True).start()
    print(f"local hub at {server.url}  (export HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1 HF_TOKEN=dummy)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
