"""quaverd's toolbox file API over real HTTP (daytona-api.md sections 5-6,
doc/quaverd.md "Toolbox", issue 4): every endpoint with its success and
error cases, Range, the sandbox's view (seeded root, /usr read-only,
volumes), a 512 MiB round trip in bounded memory, and atomic uploads
across a SIGKILL."""

import hashlib
import os
import re
import stat
import subprocess
import threading
import time

import pytest

from helpers.daytona import create_volume, unique, wait_for
from helpers.quaverd import quote
from toolbox_helpers import (RssWatcher, Toolbox, assert_daemon_error, multipart,
                             parse_bulk_download, pattern_chunks, sandbox_toolbox,
                             stream_download_sha256, stream_upload)

GO_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,9})? \+0000 UTC$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


@pytest.fixture
def tb(shared_quaverd):
    return sandbox_toolbox(shared_quaverd)


def ns_fraction(ns):
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return "." + frac if frac else ""


# ---- info routes and the seeded root ------------------------------------------------


def test_info_routes(tb):
    assert tb.ok("GET", "version").data["version"]
    assert tb.ok("GET", "user-home-dir").data == {"dir": "/home/daytona"}
    assert tb.ok("GET", "work-dir").data == {"dir": "/home/daytona"}


def test_root_is_a_debian_like_tree(tb):
    root = tb.ls("/")
    for d in ("home", "tmp", "root", "workspace", "var", "opt", "proc", "dev", "sys", "usr",
              "etc", "bin", "lib"):
        assert d in root and root[d]["isDir"], (d, sorted(root))
    assert root["tmp"]["mode"] == "dtrwxrwxrwx" and root["tmp"]["permissions"] == "0777"
    assert root["root"]["permissions"] == "0700"
    assert tb.ls("/var")["tmp"]["mode"] == "dtrwxrwxrwx"
    # Merged /usr: /bin is a symlink in the root, shown as the directory it names.
    assert (tb.root / "bin").is_symlink() and os.readlink(tb.root / "bin") == "usr/bin"
    assert "bash" in tb.ls("/bin") and "bash" in tb.ls("/usr/bin")
    etc = tb.ls("/etc")
    for name in ("passwd", "group", "hosts", "nsswitch.conf", "ld.so.cache", "alternatives",
                 "ssl", "os-release"):
        assert name in etc, (name, sorted(etc))
    for secret in ("shadow", "gshadow", "ssh", "sudoers"):
        assert secret not in etc
    assert "private" not in tb.ls("/etc/ssl")
    passwd = tb.download("/etc/passwd").raw.decode()
    assert "root:x:0:0:root:/root:/bin/bash" in passwd
    assert "daytona:x:1000:1000:daytona:/home/daytona:/bin/bash" in passwd
    assert "daytona:x:1000:" in tb.download("/etc/group").raw.decode()
    # An alternatives link resolves inside the view, through /etc/alternatives to /usr.
    alts = [n for n, e in tb.ls("/etc/alternatives").items() if not e["isDir"]]
    assert alts, "no alternatives were copied"
    # The default listing is the work dir.
    tb.upload("/home/daytona/here.txt", b"x")
    names = {e["name"] for e in tb.ok("GET", "files").data}
    assert names == {"here.txt"}


def test_file_info_fields(tb):
    tb.upload("/home/daytona/info/f.txt", b"hello world")
    host = tb.root / "home/daytona/info/f.txt"
    st = os.stat(host)
    info = tb.info("/home/daytona/info/f.txt")
    assert info["name"] == "f.txt"
    assert info["path"] == "/home/daytona/info/f.txt"
    assert info["size"] == 11 and info["isDir"] is False
    assert info["mode"] == "-rw-r--r--" and info["permissions"] == "0644"
    assert info["owner"] == "1000" and info["group"] == "1000"
    assert GO_TIME.match(info["modTime"]), info["modTime"]
    assert RFC3339.match(info["modifiedAt"]), info["modifiedAt"]
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(st.st_mtime_ns // 10**9))
    assert info["modifiedAt"] == when + ns_fraction(st.st_mtime_ns) + "Z"
    assert info["modTime"] == when.replace("T", " ") + ns_fraction(st.st_mtime_ns) + " +0000 UTC"
    d = tb.info("/home/daytona/info")
    assert d["isDir"] is True and d["mode"] == "drwxr-xr-x" and d["name"] == "info"
    # Relative paths start at the work dir.
    assert tb.info("info/f.txt")["size"] == 11
    # System files are shown with their own owner.
    bash = tb.info("/usr/bin/bash")
    assert bash["owner"] == str(os.stat("/usr/bin/bash").st_uid) or bash["owner"] == "1000"


def test_list_and_info_errors(tb):
    r = tb.call("GET", "files", {"path": "/no/such/dir"})
    body = assert_daemon_error(r, 404, "FILE_NOT_FOUND")
    assert body["method"] == "GET" and body["path"].endswith("/files")
    tb.upload("/home/daytona/plain.txt", b"x")
    assert_daemon_error(tb.call("GET", "files", {"path": "/home/daytona/plain.txt"}), 400)
    assert_daemon_error(tb.call("GET", "files/info", {"path": "/nope"}), 404, "FILE_NOT_FOUND")
    assert_daemon_error(tb.call("GET", "files/info"), 400)
    assert_daemon_error(tb.call("GET", "files", {"path": "/", "depth": "0"}), 400)


def test_listing_follows_links_and_skips_broken_ones(tb):
    tb.upload("/home/daytona/ln/target.txt", b"abc")
    d = tb.root / "home/daytona/ln"
    os.symlink("target.txt", d / "good")
    os.symlink("missing", d / "broken")
    os.symlink("/etc", d / "etcdir")
    os.mkfifo(d / "fifo")
    entries = tb.ls("/home/daytona/ln")
    assert "broken" not in entries
    assert entries["good"]["size"] == 3 and entries["good"]["mode"] == "-rw-r--r--"
    assert entries["etcdir"]["isDir"] is True
    assert entries["fifo"]["mode"].startswith("p")
    assert entries["target.txt"]["path"] == "/home/daytona/ln/target.txt"
    # A FIFO is never opened for a download (it would hang).
    assert_daemon_error(tb.call("GET", "files/download", {"path": "/home/daytona/ln/fifo"}), 400)


def test_listing_depth(tb):
    tb.upload("/home/daytona/deep/a/b/c.txt", b"c")
    flat = tb.ok("GET", "files", {"path": "/home/daytona/deep"}).data
    assert [e["path"] for e in flat] == ["/home/daytona/deep/a"]
    deeper = tb.ok("GET", "files", {"path": "/home/daytona/deep", "depth": "3"}).data
    assert {e["path"] for e in deeper} == {"/home/daytona/deep/a", "/home/daytona/deep/a/b",
                                           "/home/daytona/deep/a/b/c.txt"}


# ---- download and Range ---------------------------------------------------------------


def test_download_and_ranges(tb):
    data = bytes(range(256)) * 40  # 10240 bytes
    tb.upload("/home/daytona/r.bin", data)
    r = tb.download("/home/daytona/r.bin")
    assert r.raw == data
    assert r.headers["content-type"] == "application/octet-stream"
    assert 'filename="r.bin"' in r.headers["content-disposition"]
    assert r.headers.get("accept-ranges") == "bytes"
    cases = {
        "bytes=0-99": (0, 100),
        "bytes=100-": (100, len(data) - 100),
        "bytes=-10": (len(data) - 10, 10),
        "bytes=10000-99999": (10000, 240),
        "bytes=-99999": (0, len(data)),
        "bytes=5-5": (5, 1),
    }
    for rng, (start, length) in cases.items():
        r = tb.download("/home/daytona/r.bin", expect=206, headers={"Range": rng})
        assert r.raw == data[start:start + length], rng
        assert r.headers["content-range"] == f"bytes {start}-{start + length - 1}/{len(data)}"
        assert int(r.headers["content-length"]) == length
    for rng in ("bytes=10240-", "bytes=99999-100000", "bytes=5-2", "bytes=-0", "bytes=x-y",
                "items=0-1"):
        r = tb.call("GET", "files/download", {"path": "/home/daytona/r.bin"},
                    headers={"Range": rng})
        assert r.status == 416, (rng, r.status)
        assert r.headers["content-range"] == f"bytes */{len(data)}"
    # Several ranges: the whole file is a valid answer.
    r = tb.download("/home/daytona/r.bin", headers={"Range": "bytes=0-1,5-6"})
    assert r.raw == data
    # An empty file cannot satisfy any range.
    tb.upload("/home/daytona/empty", b"")
    assert tb.download("/home/daytona/empty").raw == b""
    assert tb.call("GET", "files/download", {"path": "/home/daytona/empty"},
                   headers={"Range": "bytes=0-"}).status == 416


def test_download_errors(tb):
    assert_daemon_error(tb.call("GET", "files/download", {"path": "/nope"}), 404, "FILE_NOT_FOUND")
    assert_daemon_error(tb.call("GET", "files/download", {"path": "/home"}), 400)
    assert_daemon_error(tb.call("GET", "files/download"), 400)
    # /usr is the host's, read-only: readable.
    r = tb.download("/usr/bin/bash", headers={"Range": "bytes=0-3"}, expect=206)
    assert r.raw == b"\x7fELF"


def test_bulk_download(tb):
    tb.upload("/home/daytona/bulk/a.txt", b"alpha")
    tb.upload('/home/daytona/bulk/we"ird name.json', b'{"x": 1}')
    paths = ["/home/daytona/bulk/a.txt", "/home/daytona/bulk/missing", "bulk/a.txt",
             '/home/daytona/bulk/we"ird name.json', "/home/daytona/bulk"]
    r = tb.ok("POST", "files/bulk-download", json={"paths": paths})
    assert r.headers["content-type"] == "multipart/form-data; boundary=DAYTONA-FILE-BOUNDARY"
    parts = parse_bulk_download(r)
    assert [p[1] for p in parts] == paths  # exact echo, in request order
    assert [p[0] for p in parts] == ["file", "error", "file", "file", "error"]
    assert parts[0][3] == b"alpha" and parts[2][3] == b"alpha" and parts[3][3] == b'{"x": 1}'
    assert parts[0][2]["content-type"].startswith("text/plain")
    assert parts[3][2]["content-type"] == "application/json"
    err = __import__("json").loads(parts[1][3])
    assert err["statusCode"] == 404 and err["code"] == "FILE_NOT_FOUND"
    assert "filename*=utf-8''" in parts[3][2]["content-disposition"]
    assert_daemon_error(tb.call("POST", "files/bulk-download", json={"nope": []}), 400)
    assert_daemon_error(tb.call("POST", "files/bulk-download", body=b"not json"), 400)
    r = tb.ok("POST", "files/bulk-download", json={"paths": []})
    assert parse_bulk_download(r) == []


def test_bulk_download_of_large_files(tb):
    """Past 8 MiB the answer is built in an unnamed temp file, not in memory."""
    big = b"".join(pattern_chunks(12 << 20, seed=b"bulk"))
    tb.upload("/workspace/big1", big)
    tb.upload("/workspace/small", b"small")
    tmp_before = sorted(os.listdir(tb.q.state_dir / "tmp"))
    r = tb.ok("POST", "files/bulk-download", json={"paths": ["/workspace/small", "/workspace/big1",
                                                             "/workspace/big1"]})
    parts = parse_bulk_download(r)
    assert [p[3] for p in parts] == [b"small", big, big]
    assert sorted(os.listdir(tb.q.state_dir / "tmp")) == tmp_before


def test_head_download(tb):
    tb.upload("/workspace/h.bin", b"0123456789")
    r = tb.call("HEAD", "files/download", {"path": "/workspace/h.bin"})
    assert r.status == 200 and r.raw == b"" and r.headers["content-length"] == "10"


# ---- uploads ------------------------------------------------------------------------


def test_upload_multipart_v1_and_v2(tb):
    ctype, body = multipart([("file", b"one", "x.txt")])
    tb.ok("POST", "files/upload", {"path": "/home/daytona/up/one.txt"}, body=body,
          headers={"Content-Type": ctype})
    assert tb.download("/home/daytona/up/one.txt").raw == b"one"
    ctype, body = multipart([("other", "ignored", None), ("file", b"two", "y.bin")])
    r = tb.ok("POST", "files/upload-v2", {"path": "/home/daytona/up/two.txt"}, body=body,
              headers={"Content-Type": ctype})
    assert r.data["path"] == "/home/daytona/up/two.txt" and r.data["name"] == "two.txt"
    assert tb.download("/home/daytona/up/two.txt").raw == b"two"
    # Raw body (v2 only); parents are created; overwrite keeps the mode.
    tb.upload("/workspace/new/dir/raw.bin", b"\x00raw\xff")
    assert tb.download("/workspace/new/dir/raw.bin").raw == b"\x00raw\xff"
    tb.ok("POST", "files/permissions", {"path": "/workspace/new/dir/raw.bin", "mode": "0600"})
    tb.upload("/workspace/new/dir/raw.bin", b"again")
    assert tb.info("/workspace/new/dir/raw.bin")["permissions"] == "0600"
    assert tb.download("/workspace/new/dir/raw.bin").raw == b"again"
    assert stat.S_IMODE(os.stat(tb.root / "workspace/new/dir/raw.bin").st_mode) == 0o600


def test_upload_errors(tb):
    ctype, body = multipart([("notfile", b"x", "x")])
    assert_daemon_error(tb.call("POST", "files/upload", {"path": "/home/daytona/e1"}, body=body,
                                headers={"Content-Type": ctype}), 400)
    assert_daemon_error(tb.call("POST", "files/upload", {"path": "/home/daytona/e2"},
                                body=b"raw", headers={"Content-Type": "text/plain"}), 400)
    bad = b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\ntruncated"
    assert_daemon_error(tb.call("POST", "files/upload-v2", {"path": "/home/daytona/e3"},
                                body=bad, headers={"Content-Type": "multipart/form-data; boundary=b"}),
                        400)
    assert "e3" not in tb.ls("/home/daytona")
    assert_daemon_error(tb.call("POST", "files/upload-v2", body=b"x",
                                headers={"Content-Type": "application/octet-stream"}), 400)
    tb.ok("POST", "files/folder", {"path": "/home/daytona/adir", "mode": "0755"}, expect=201)
    assert_daemon_error(tb.call("POST", "files/upload-v2", {"path": "/home/daytona/adir"},
                                body=b"x", headers={"Content-Type": "application/octet-stream"}),
                        400)
    r = tb.call("POST", "files/upload-v2", {"path": "/usr/quaverd-test"}, body=b"x",
                headers={"Content-Type": "application/octet-stream"})
    assert_daemon_error(r, 403, "FILE_ACCESS_DENIED")
    assert not os.path.exists("/usr/quaverd-test")
    r = tb.call("POST", "files/upload-v2", {"path": "/usr/local/newdir/x"}, body=b"x",
                headers={"Content-Type": "application/octet-stream"})
    assert_daemon_error(r, 403)
    assert not os.path.exists("/usr/local/newdir")


def test_bulk_upload(tb):
    ctype, body = multipart([
        ("files[0].path", "/home/daytona/bu/a.txt", None), ("files[0].file", b"AAA", "a.txt"),
        ("files[1].path", "bu/sub/b.txt", None), ("files[1].file", b"BB", "b.txt"),
    ])
    r = tb.ok("POST", "files/bulk-upload", body=body, headers={"Content-Type": ctype})
    assert r.data == {"files": [{"path": "/home/daytona/bu/a.txt", "bytes": 3},
                                {"path": "bu/sub/b.txt", "bytes": 2}]}
    assert tb.download("/home/daytona/bu/sub/b.txt").raw == b"BB"
    ctype, body = multipart([
        ("files[0].path", "/usr/nope.txt", None), ("files[0].file", b"x", "x"),
        ("files[1].path", "/home/daytona/bu/c.txt", None), ("files[1].file", b"C", "c"),
        ("files[2].file", b"orphan", "o"),
    ])
    r = tb.call("POST", "files/bulk-upload", body=body, headers={"Content-Type": ctype})
    assert r.status == 400
    assert r.data["files"] == [{"path": "/home/daytona/bu/c.txt", "bytes": 1}]
    assert len(r.data["errors"]) == 2
    assert any(e["path"] == "/usr/nope.txt" for e in r.data["errors"])
    assert_daemon_error(tb.call("POST", "files/bulk-upload", body=b"x",
                                headers={"Content-Type": "text/plain"}), 400)


# ---- folder, delete, move, permissions ------------------------------------------------


def test_folder(tb):
    tb.ok("POST", "files/folder", {"path": "/home/daytona/f1/f2/f3", "mode": "0750"},
          expect=201)
    assert tb.info("/home/daytona/f1/f2/f3")["permissions"] == "0750"
    # mkdir -p: an existing directory is fine.
    tb.ok("POST", "files/folder", {"path": "/home/daytona/f1/f2", "mode": "0755"}, expect=201)
    tb.upload("/home/daytona/f1/file", b"x")
    assert_daemon_error(tb.call("POST", "files/folder", {"path": "/home/daytona/f1/file",
                                                         "mode": "0755"}), 400)
    assert_daemon_error(tb.call("POST", "files/folder", {"path": "/home/daytona/x",
                                                         "mode": "9z"}), 400)
    assert_daemon_error(tb.call("POST", "files/folder", {"path": "/usr/newdir",
                                                         "mode": "0755"}), 403)


def test_delete(tb):
    tb.upload("/home/daytona/del/a/b.txt", b"x")
    tb.upload("/home/daytona/del/c.txt", b"x")
    tb.ok("DELETE", "files", {"path": "/home/daytona/del/c.txt"}, expect=204)
    assert "c.txt" not in tb.ls("/home/daytona/del")
    assert_daemon_error(tb.call("DELETE", "files", {"path": "/home/daytona/del/a"}), 400)
    tb.ok("DELETE", "files", {"path": "/home/daytona/del/a", "recursive": "true"}, expect=204)
    assert tb.ls("/home/daytona/del") == {}
    assert_daemon_error(tb.call("DELETE", "files", {"path": "/home/daytona/del/a"}), 404)
    assert_daemon_error(tb.call("DELETE", "files", {"path": "/usr/bin/bash"}), 403)
    assert os.path.exists("/usr/bin/bash")
    assert_daemon_error(tb.call("DELETE", "files", {"path": "/usr", "recursive": "true"}), 409)
    assert_daemon_error(tb.call("DELETE", "files", {"path": "/", "recursive": "true"}), 409)
    # A symlink is deleted itself, never what it points to.
    tb.upload("/home/daytona/del/keep.txt", b"keep")
    os.symlink("keep.txt", tb.root / "home/daytona/del/link")
    tb.ok("DELETE", "files", {"path": "/home/daytona/del/link"}, expect=204)
    assert tb.download("/home/daytona/del/keep.txt").raw == b"keep"


def test_move(tb, shared_quaverd):
    tb.upload("/home/daytona/mv/a.txt", b"A")
    tb.upload("/home/daytona/mv/b.txt", b"B")
    tb.ok("POST", "files/move", {"source": "/home/daytona/mv/a.txt",
                                 "destination": "/home/daytona/mv/c.txt"})
    assert set(tb.ls("/home/daytona/mv")) == {"b.txt", "c.txt"}
    r = tb.call("POST", "files/move", {"source": "/home/daytona/mv/c.txt",
                                       "destination": "/home/daytona/mv/b.txt"})
    assert_daemon_error(r, 409, "CONFLICT")
    assert tb.download("/home/daytona/mv/b.txt").raw == b"B"
    assert_daemon_error(tb.call("POST", "files/move", {"source": "/home/daytona/mv/c.txt",
                                                       "destination": "/home/daytona/no/x"}), 404)
    assert_daemon_error(tb.call("POST", "files/move", {"source": "/home/daytona/mv/zz",
                                                       "destination": "/home/daytona/zz"}), 404)
    assert_daemon_error(tb.call("POST", "files/move", {"source": "/home/daytona/mv",
                                                       "destination": "/home/daytona/mv/in"}),
                        400)
    assert_daemon_error(tb.call("POST", "files/move", {"source": "/usr/bin/bash",
                                                       "destination": "/home/daytona/bash"}), 403)
    assert_daemon_error(tb.call("POST", "files/move", {"source": "/home/daytona/mv/b.txt",
                                                       "destination": "/usr/b.txt"}), 403)
    assert_daemon_error(tb.call("POST", "files/move", {"source": "/home/daytona/mv"}), 400)
    # A directory moves with its content.
    tb.ok("POST", "files/move", {"source": "/home/daytona/mv", "destination": "/workspace/mv2"})
    assert tb.download("/workspace/mv2/c.txt").raw == b"A"


def test_permissions(tb):
    tb.upload("/home/daytona/p.txt", b"x")
    tb.ok("POST", "files/permissions", {"path": "/home/daytona/p.txt", "mode": "0600"})
    assert tb.info("/home/daytona/p.txt")["mode"] == "-rw-------"
    tb.ok("POST", "files/permissions", {"path": "/home/daytona/p.txt", "mode": "755",
                                        "owner": "daytona", "group": "1000"})
    assert tb.info("/home/daytona/p.txt")["permissions"] == "0755"
    r = tb.call("POST", "files/permissions", {"path": "/home/daytona/p.txt", "owner": "root"})
    assert_daemon_error(r, 403)
    assert_daemon_error(tb.call("POST", "files/permissions",
                                {"path": "/home/daytona/p.txt", "mode": "0999"}), 400)
    assert_daemon_error(tb.call("POST", "files/permissions",
                                {"path": "/home/daytona/none", "mode": "0644"}), 404)
    before = os.stat("/usr/bin/bash").st_mode
    assert_daemon_error(tb.call("POST", "files/permissions",
                                {"path": "/usr/bin/bash", "mode": "0777"}), 403)
    assert os.stat("/usr/bin/bash").st_mode == before


# ---- find, search, replace -------------------------------------------------------------


def test_find_search_replace(tb):
    tb.upload("/home/daytona/src/a.py", b"import os\nprint('needle here')\n")
    tb.upload("/home/daytona/src/sub/b.txt", b"no\r\nneedle\r\nneedle again")
    tb.upload("/home/daytona/src/sub/c.md", b"nothing")
    found = tb.ok("GET", "files/find", {"path": "/home/daytona/src", "pattern": "needle"}).data
    assert sorted((m["file"], m["line"], m["content"]) for m in found) == [
        ("/home/daytona/src/a.py", 2, "print('needle here')"),
        ("/home/daytona/src/sub/b.txt", 2, "needle"),
        ("/home/daytona/src/sub/b.txt", 3, "needle again"),
    ]
    assert tb.ok("GET", "files/find", {"path": "/home/daytona/src", "pattern": "zzz"}).data == []
    assert_daemon_error(tb.call("GET", "files/find", {"path": "/home/daytona/src"}), 400)
    assert_daemon_error(tb.call("GET", "files/find", {"path": "/nope", "pattern": "x"}), 404)

    res = tb.ok("GET", "files/search", {"path": "/home/daytona/src", "pattern": "*.txt"}).data
    assert res == {"files": ["/home/daytona/src/sub/b.txt"]}
    res = tb.ok("GET", "files/search", {"path": "/home/daytona/src", "pattern": "[ab].*"}).data
    assert sorted(res["files"]) == ["/home/daytona/src/a.py", "/home/daytona/src/sub/b.txt"]

    r = tb.ok("POST", "files/replace", json={
        "files": ["/home/daytona/src/a.py", "/home/daytona/src/sub/b.txt", "/home/daytona/nope",
                  "/usr/bin/bash"],
        "pattern": "needle", "newValue": "pin"})
    res = {x["file"]: x for x in r.data}
    assert res["/home/daytona/src/a.py"]["success"] is True
    assert res["/home/daytona/src/sub/b.txt"]["success"] is True
    assert res["/home/daytona/nope"]["success"] is False and res["/home/daytona/nope"]["error"]
    assert res["/usr/bin/bash"]["success"] is False
    assert tb.download("/home/daytona/src/sub/b.txt").raw == b"no\r\npin\r\npin again"
    assert tb.download("/home/daytona/src/a.py").raw == b"import os\nprint('pin here')\n"
    assert_daemon_error(tb.call("POST", "files/replace", json={"files": [], "pattern": ""}), 400)


def test_replace_streams_across_chunk_boundaries(tb):
    # A pattern straddling the 64 KiB read boundary is still found.
    data = b"a" * 65530 + b"NEEDLE" + b"b" * 100 + b"NEEDLE"
    tb.upload("/home/daytona/big.txt", data)
    tb.ok("POST", "files/replace", json={"files": ["/home/daytona/big.txt"],
                                         "pattern": "NEEDLE", "newValue": "x"})
    assert tb.download("/home/daytona/big.txt").raw == data.replace(b"NEEDLE", b"x")


# ---- sandbox states, ids, activity ------------------------------------------------------


def test_toolbox_needs_a_started_sandbox_by_id(shared_quaverd):
    q = shared_quaverd
    tb = sandbox_toolbox(q, name=unique("tbstate"))
    tb.upload("/home/daytona/kept.txt", b"kept")
    q.ok("POST", f"/sandbox/{tb.id}/stop")
    for route, params in (("files", {"path": "/"}), ("files/download", {"path": "/etc/passwd"}),
                          ("version", {})):
        r = tb.call("GET", route, params)
        body = assert_daemon_error(r, 409, "CONFLICT")
        assert body["message"] == f"Sandbox {tb.id} is not started (state: stopped)"
    q.ok("POST", f"/sandbox/{tb.id}/start")
    assert tb.download("/home/daytona/kept.txt").raw == b"kept"
    # The toolbox names sandboxes by id only.
    by_name = Toolbox(q, dict(tb.dto, id=tb.dto["name"]))
    assert_daemon_error(by_name.call("GET", "version"), 404)
    assert_daemon_error(Toolbox(q, dict(tb.dto, id="no-such-id")).call("GET", "version"), 404)
    assert_daemon_error(tb.call("GET", "files/nope"), 404)
    assert tb.call("PUT", "files").status in (404, 405)


def test_toolbox_calls_count_as_activity(make_quaverd):
    q = make_quaverd("--clock-scale", "60")  # one minute lasts one second
    tb = sandbox_toolbox(q, autoStopInterval=1)

    def state():
        items = q.ok("GET", f"/sandbox?id={tb.id}")["items"]
        return items[0]["state"]

    t_end = time.monotonic() + 2.5
    while time.monotonic() < t_end:
        tb.ok("GET", "files/info", {"path": "/home/daytona"})
        time.sleep(0.2)
    assert state() == "started", "auto-stop fired although the toolbox was in use"
    wait_for("auto-stop once the toolbox is idle", lambda: state() == "stopped", timeout=10)


# ---- volumes in the view ----------------------------------------------------------------


def test_volume_at_its_mount_path_with_subpath(shared_quaverd):
    q = shared_quaverd
    vol = create_volume(q)
    tb = sandbox_toolbox(q, volumes=[{"volumeId": vol["id"], "mountPath": "/home/daytona/vol",
                                      "subpath": "users/alice"}])
    assert tb.ls("/home/daytona")["vol"]["isDir"]
    tb.upload("/home/daytona/vol/notes/n.txt", b"in the volume")
    data = q.state_dir / "volumes" / vol["id"] / "data"
    assert (data / "users/alice/notes/n.txt").read_bytes() == b"in the volume"
    assert not (tb.root / "home/daytona/vol/notes").exists()
    # ".." from the volume's root goes back to the mount point's parent, in the root.
    tb.upload("/home/daytona/outside.txt", b"root side")
    assert tb.download("/home/daytona/vol/../outside.txt").raw == b"root side"
    assert tb.download("/home/daytona/vol/../../../../../home/daytona/outside.txt").raw == \
        b"root side"
    # A second sandbox mounting the volume's root sees the file under its subpath.
    tb2 = sandbox_toolbox(q, volumes=[{"volumeId": vol["id"], "mountPath": "/data"}])
    assert tb2.download("/data/users/alice/notes/n.txt").raw == b"in the volume"
    # Moving between the root and a volume works (a cross-mount move).
    tb.ok("POST", "files/move", {"source": "/home/daytona/outside.txt",
                                 "destination": "/home/daytona/vol/moved.txt"})
    assert (data / "users/alice/moved.txt").read_bytes() == b"root side"
    # Deleting the directory holding the mount point cannot take the volume with it.
    r = tb.call("DELETE", "files", {"path": "/home/daytona", "recursive": "true"})
    assert r.status == 409
    assert (data / "users/alice/moved.txt").read_bytes() == b"root side"
    assert_daemon_error(tb.call("DELETE", "files", {"path": "/home/daytona/vol",
                                                    "recursive": "true"}), 409)


def test_volume_on_another_filesystem(make_quaverd, tmp_path):
    """A volume whose data lives on another filesystem (a tmpfs here): spooled
    uploads are copied instead of renamed, and moves copy then delete."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root", pytrace=False)
    q = make_quaverd()
    vol = create_volume(q)
    data = q.state_dir / "volumes" / vol["id"] / "data"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "quaverd-test", str(data)],
                   check=True)
    try:
        tb = sandbox_toolbox(q, volumes=[{"volumeId": vol["id"], "mountPath": "/mnt/vol"}])
        blob = b"".join(pattern_chunks(3 << 20, seed=b"xdev"))
        tb.upload("/mnt/vol/big.bin", blob)  # spooled (> 1 MiB), then copied across
        assert (data / "big.bin").read_bytes() == blob
        tb.upload("/home/daytona/tree/sub/f.txt", b"file")
        os.symlink("sub/f.txt", tb.root / "home/daytona/tree/link")
        tb.ok("POST", "files/permissions", {"path": "/home/daytona/tree/sub/f.txt", "mode": "0640"})
        tb.ok("POST", "files/move", {"source": "/home/daytona/tree", "destination": "/mnt/vol/tree"})
        assert "tree" not in tb.ls("/home/daytona")
        assert (data / "tree/sub/f.txt").read_bytes() == b"file"
        assert os.readlink(data / "tree/link") == "sub/f.txt"
        assert tb.info("/mnt/vol/tree/sub/f.txt")["permissions"] == "0640"
        assert tb.download("/mnt/vol/tree/link").raw == b"file"
        tb.ok("POST", "files/move", {"source": "/mnt/vol/big.bin", "destination": "/workspace/b"})
        assert tb.download("/workspace/b").raw == blob and not (data / "big.bin").exists()
        r = tb.call("POST", "files/move", {"source": "/mnt/vol/tree", "destination": "/workspace/b"})
        assert_daemon_error(r, 409)
        q.ok("DELETE", f"/sandbox/{tb.id}")
    finally:
        subprocess.run(["umount", str(data)], check=True)


# ---- large files, memory, atomicity ------------------------------------------------------


def test_512mib_round_trip_in_bounded_memory(make_quaverd):
    q = make_quaverd()
    tb = sandbox_toolbox(q)
    total = 512 << 20
    want = hashlib.sha256()

    def chunks():
        for c in pattern_chunks(total):
            want.update(c)
            yield c

    with RssWatcher(q.pid()) as rss:
        status, data, up_s = stream_upload(q, tb, "/home/daytona/big.bin", total, chunks())
        assert status == 200, data
        assert data["size"] == total
        status, got, n, down_s = stream_download_sha256(q, tb, "/home/daytona/big.bin")
    assert status == 200 and n == total
    assert got == want.hexdigest()
    assert tb.info("/home/daytona/big.bin")["size"] == total
    print(f"\n512 MiB upload {total / up_s / 1e6:.0f} MB/s, download {total / down_s / 1e6:.0f} "
          f"MB/s, peak RSS {rss.peak_kb / 1024:.1f} MiB")
    assert rss.peak_kb < 100 * 1024, f"quaverd RSS reached {rss.peak_kb} kB"


def test_multipart_upload_of_a_large_file_streams(make_quaverd):
    q = make_quaverd()
    tb = sandbox_toolbox(q)
    total = 64 << 20
    boundary = "big-boundary-123"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"x\"\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    want = hashlib.sha256()

    def chunks():
        yield head
        for c in pattern_chunks(total, seed=b"multipart"):
            want.update(c)
            yield c
        yield tail

    with RssWatcher(q.pid()) as rss:
        status, data, _ = stream_upload(q, tb, "/workspace/mp.bin", len(head) + total + len(tail),
                                        chunks(), route="files/upload",
                                        content_type=f"multipart/form-data; boundary={boundary}")
    assert status == 200, data
    status, got, n, _ = stream_download_sha256(q, tb, "/workspace/mp.bin")
    assert (status, n, got) == (200, total, want.hexdigest())
    assert rss.peak_kb < 100 * 1024


def _listing_has_no_temp(tb, path):
    names = set(tb.ls(path))
    assert not [n for n in names if n.startswith(".quaverd")], names
    return names


def test_upload_killed_mid_way_leaves_the_old_content(make_quaverd):
    q = make_quaverd()
    tb = sandbox_toolbox(q)
    tb.upload("/home/daytona/atomic.txt", b"old content\n")
    total = 256 << 20
    sent_enough = threading.Event()
    result = {}

    def progress(n):
        if n >= 32 << 20:
            sent_enough.set()

    def run():
        try:
            result["r"] = stream_upload(q, tb, "/home/daytona/atomic.txt", total,
                                        pattern_chunks(total), on_progress=progress, timeout=30)
        except OSError as e:
            result["err"] = e

    t = threading.Thread(target=run)
    t.start()
    assert sent_enough.wait(30)
    q.kill()
    t.join(30)
    assert "err" in result, f"the upload finished although quaverd was killed: {result}"
    q.restart()
    assert tb.download("/home/daytona/atomic.txt").raw == b"old content\n"
    assert _listing_has_no_temp(tb, "/home/daytona") == {"atomic.txt"}
    leftovers = [p for p in os.listdir(tb.root / "home/daytona") if p != "atomic.txt"]
    assert leftovers == []


def test_multipart_upload_killed_while_committing_is_all_or_nothing(make_quaverd):
    """The body is complete and the handler is copying it when quaverd dies:
    the target holds the old bytes or all the new ones, never a part."""
    q = make_quaverd()
    tb = sandbox_toolbox(q)
    old = b"old content\n"
    tb.upload("/home/daytona/mp.bin", old)
    total = 192 << 20
    boundary = "kill-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"mp.bin\"\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    new = hashlib.sha256()
    done = threading.Event()

    def chunks():
        yield head
        for c in pattern_chunks(total, seed=b"kill"):
            new.update(c)
            yield c
        yield tail
        done.set()

    def run():
        try:
            stream_upload(q, tb, "/home/daytona/mp.bin", len(head) + total + len(tail), chunks(),
                          route="files/upload",
                          content_type=f"multipart/form-data; boundary={boundary}", timeout=30)
        except OSError:
            pass

    t = threading.Thread(target=run)
    t.start()
    assert done.wait(60)
    time.sleep(0.05)
    q.kill()
    t.join(30)
    q.restart()
    status, got, n, _ = stream_download_sha256(q, tb, "/home/daytona/mp.bin")
    assert status == 200
    assert got in (hashlib.sha256(old).hexdigest(), new.hexdigest()), f"a partial file ({n} bytes)"
    assert _listing_has_no_temp(tb, "/home/daytona") == {"mp.bin"}
