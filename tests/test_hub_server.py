"""The local Hub-compatible server speaks the protocol details the real clients rely on (raw HTTP, stdlib only)."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request

import pytest
from hub_server import HubServer

TOKEN = {"Authorization": "Bearer hf_local_dummy_token"}
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never send 127.0.0.1 through a proxy


def call(server, method, path, body=None, headers=None, content_type="application/json"):
    """(status, headers, body bytes) of one request; JSON bodies are encoded from dicts."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    request = urllib.request.Request(server.url + path, data=data, method=method, headers={**(headers or {})})
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with OPENER.open(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def commit(server, repo, lines, parent=None, branch="main"):
    header = {"key": "header", "value": {"summary": "test", "description": "", **({"parentCommit": parent} if parent else {})}}
    payload = b"".join(json.dumps(line).encode() + b"\n" for line in [header, *lines])
    return call(server, "POST", f"/api/datasets/{repo}/commit/{branch}", payload, TOKEN, "application/x-ndjson")


def regular_file(path, content: bytes):
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64"}}


@pytest.fixture()
def server():
    with HubServer() as hub:
        status, _, _ = call(hub, "POST", "/api/repos/create", {"name": "data", "organization": "org", "type": "dataset"}, TOKEN)
        assert status == 200
        yield hub


def test_writes_need_a_token_and_a_second_create_answers_409_with_the_url(server):
    assert call(server, "POST", "/api/repos/create", {"name": "x", "organization": "org", "type": "dataset"})[0] == 401
    status, _, body = call(server, "POST", "/api/repos/create", {"name": "data", "organization": "org", "type": "dataset"}, TOKEN)
    assert status == 409 and json.loads(body)["url"] == f"{server.url}/datasets/org/data"


def test_errors_carry_the_hub_error_codes(server):
    cases = {
        "/api/datasets/org/nope/revision/main": "RepoNotFound",
        "/api/datasets/org/data/revision/v9.9.9": "RevisionNotFound",
        "/api/datasets/org/data/tree/main/missing-folder": "EntryNotFound",
        "/datasets/org/data/resolve/main/missing.txt": "EntryNotFound",
    }
    for path, code in cases.items():
        status, headers, _ = call(server, "GET", path)
        assert (status, headers["X-Error-Code"]) == (404, code), path


def test_parquet_goes_through_lfs_and_is_served_with_linked_etag_and_ranges(server):
    content = b"PAR1" + bytes(range(256)) * 4 + b"PAR1"
    oid = hashlib.sha256(content).hexdigest()
    status, _, body = call(server, "POST", "/api/datasets/org/data/preupload/main", {"files": [
        {"path": "signals/train-00000-of-00001.parquet", "size": len(content), "sample": base64.b64encode(content[:512]).decode()},
        {"path": "README.md", "size": 5, "sample": base64.b64encode(b"hello").decode()},
    ]}, TOKEN)
    modes = {f["path"]: f["uploadMode"] for f in json.loads(body)["files"]}
    assert modes == {"signals/train-00000-of-00001.parquet": "lfs", "README.md": "regular"}
    lfs_file = {"key": "lfsFile", "value": {"path": "signals/train-00000-of-00001.parquet", "algo": "sha256", "oid": oid, "size": len(content)}}
    assert commit(server, "org/data", [lfs_file])[0] == 422  # never uploaded
    _, _, body = call(server, "POST", "/datasets/org/data.git/info/lfs/objects/batch",
                      {"operation": "upload", "objects": [{"oid": oid, "size": len(content)}]}, TOKEN)
    href = json.loads(body)["objects"][0]["actions"]["upload"]["href"]
    upload = urllib.request.Request(href, data=iter([content[:100], content[100:]]), method="PUT",
                                    headers={"Content-Type": "application/octet-stream"})  # an iterable body goes chunked
    assert OPENER.open(upload).status == 200
    status, _, body = commit(server, "org/data", [lfs_file, regular_file("README.md", b"hello")])
    assert status == 200
    sha = json.loads(body)["commitOid"]
    status, headers, _ = call(server, "HEAD", "/datasets/org/data/resolve/main/signals/train-00000-of-00001.parquet")
    assert (status, headers["X-Repo-Commit"], headers["X-Linked-Etag"], headers["X-Linked-Size"]) == (200, sha, f'"{oid}"', str(len(content)))
    status, headers, body = call(server, "GET", "/datasets/org/data/resolve/main/signals/train-00000-of-00001.parquet",
                                 headers={"Range": "bytes=-4"})
    assert (status, body, headers["Content-Range"]) == (206, b"PAR1", f"bytes {len(content) - 4}-{len(content) - 1}/{len(content)}")
    _, headers, _ = call(server, "HEAD", "/datasets/org/data/resolve/main/README.md")
    assert headers["ETag"] == '"%s"' % hashlib.sha1(b"blob 5\0hello").hexdigest()  # git's blob id
    _, _, body = call(server, "GET", "/api/datasets/org/data/tree/main?recursive=true")
    assert [(e["type"], e["path"]) for e in json.loads(body)] == [
        ("file", ".gitattributes"), ("file", "README.md"), ("directory", "signals"),
        ("file", "signals/train-00000-of-00001.parquet")]


def test_a_stale_parent_commit_is_refused_and_tags_never_move(server):
    _, _, body = call(server, "GET", "/api/datasets/org/data/revision/main")
    first = json.loads(body)["sha"]
    status, _, body = commit(server, "org/data", [regular_file("a.txt", b"1")], parent=first)
    second = json.loads(body)["commitOid"]
    assert status == 200
    assert commit(server, "org/data", [regular_file("a.txt", b"2")], parent=first)[0] == 412
    assert call(server, "POST", "/api/datasets/org/data/tag/main", {"tag": "v1.0.0"}, TOKEN)[0] == 200
    assert call(server, "POST", f"/api/datasets/org/data/tag/{first}", {"tag": "v1.0.0"}, TOKEN)[0] == 409
    _, _, body = call(server, "GET", "/api/datasets/org/data/refs")
    assert json.loads(body)["tags"] == [{"name": "v1.0.0", "ref": "refs/tags/v1.0.0", "targetCommit": second}]
    _, _, body = call(server, "GET", "/api/datasets/org/data/commits/v1.0.0")
    assert [c["id"] for c in json.loads(body)] == [second, first]


def test_deletions_and_branches(server):
    files = [regular_file("keep.txt", b"k"), regular_file("old/a.txt", b"a"), regular_file("old/sub/b.txt", b"b"),
             regular_file("gone.txt", b"g")]
    assert commit(server, "org/data", files)[0] == 200
    missing = commit(server, "org/data", [{"key": "deletedFile", "value": {"path": "nope.txt"}}])
    assert (missing[0], missing[1]["X-Error-Code"]) == (404, "EntryNotFound")
    status, _, _ = commit(server, "org/data", [{"key": "deletedFile", "value": {"path": "gone.txt"}},
                                              {"key": "deletedFolder", "value": {"path": "old/"}}])
    assert status == 200
    _, _, body = call(server, "GET", "/api/datasets/org/data/tree/main?recursive=true")
    assert [e["path"] for e in json.loads(body)] == [".gitattributes", "keep.txt"]
    assert call(server, "POST", "/api/datasets/org/data/branch/dev", {}, TOKEN)[0] == 200
    assert call(server, "POST", "/api/datasets/org/data/branch/dev", {}, TOKEN)[0] == 409
    assert commit(server, "org/data", [regular_file("dev.txt", b"d")], branch="dev")[0] == 200
    _, _, body = call(server, "POST", "/api/datasets/org/data/paths-info/dev", b"paths=dev.txt&paths=keep.txt&paths=x",
                      TOKEN, "application/x-www-form-urlencoded")
    assert [e["path"] for e in json.loads(body)] == ["dev.txt", "keep.txt"]
    assert call(server, "HEAD", "/datasets/org/data/resolve/main/dev.txt")[0] == 404  # main is untouched
