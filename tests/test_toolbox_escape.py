"""Escape attempts against quaverd's toolbox (issue 4, doc/quaverd.md
"Toolbox"): links planted in the sandbox's own storage (as a process in the
sandbox could make them) to /etc/shadow, to ../../.., to the state dir's
token, absolute and relative chains, loops, a hard link attempt through the
API, and volume subpaths that try to leave their volume. No response may
carry a byte from outside the sandbox's view, and no write may land outside
it."""

import json
import os

import pytest

from helpers.daytona import create_volume
from helpers.quaverd import state_tree, tree_diff
from toolbox_helpers import host_file_fingerprint, multipart, sandbox_toolbox


def shadow_first_line():
    try:
        with open("/etc/shadow", "rb") as f:
            return f.readline().strip()
    except OSError:
        return None


@pytest.fixture
def planted(make_quaverd):
    """A sandbox whose home is full of hostile links, plus what must never leak."""
    q = make_quaverd()
    tb = sandbox_toolbox(q)
    home = tb.root / "home" / "daytona"
    state = str(q.state_dir)
    links = {
        "shadow": "/etc/shadow",
        "shadow_rel": "../../../../../../../../../../etc/shadow",
        "up": "../../..",
        "upup": "../../../../../../../../..",
        "token_abs": state + "/token",
        "token_rel": "../../../../token",
        "token_rel2": "../../../../../token",
        "statedir": state,
        "hostetc": "/etc",
        "hostroot": "/",
        "proc_root": "/proc/self/root/etc/shadow",
        "proc_cwd": "/proc/self/cwd",
        "usr_up": "/usr/../../../../etc/shadow",
        "loop_a": "loop_b",
        "loop_b": "loop_a",
        "chain1": "chain2/../../../..",
        "chain2": "up/home",
    }
    for name, target in links.items():
        os.symlink(target, home / name)
    os.makedirs(home / "d1/d2")
    os.symlink("../../up/../../..", home / "d1/d2/deep")
    # The token and the shadow line are what must never come back.
    secrets = [q.token.encode()]
    line = shadow_first_line()
    if line:
        secrets.append(line)
    return q, tb, links, secrets


def assert_clean(resp, secrets):
    blob = resp.raw + json.dumps(resp.headers).encode()
    for s in secrets:
        assert s not in blob, f"a secret leaked in a response to {resp!r:.200}"


READ_PATHS = [
    "/home/daytona/shadow", "/home/daytona/shadow_rel", "/home/daytona/up/etc/shadow",
    "/home/daytona/upup/etc/shadow", "/home/daytona/token_abs", "/home/daytona/token_rel",
    "/home/daytona/token_rel2", "/home/daytona/statedir/token", "/home/daytona/hostetc/shadow",
    "/home/daytona/hostroot/etc/shadow", "/home/daytona/proc_root", "/home/daytona/proc_cwd/token",
    "/home/daytona/usr_up", "/home/daytona/loop_a", "/home/daytona/chain1/etc/shadow",
    "/home/daytona/d1/d2/deep/etc/shadow", "/home/daytona/d1/d2/deep/token",
    "/../../../../etc/shadow", "../../../../../token", "/etc/shadow", "/etc/gshadow",
    "/usr/../etc/shadow", "/usr/../../token", "/proc/self/environ", "/proc/1/root/etc/shadow",
    "/home/daytona/statedir", "/home/daytona/hostroot",
]


def test_no_read_returns_a_byte_from_outside(planted):
    q, tb, links, secrets = planted
    for path in READ_PATHS:
        for route in ("files/download", "files/info", "files"):
            r = tb.call("GET", route, {"path": path})
            assert_clean(r, secrets)
            assert r.status in (200, 400, 404), (route, path, r.status, r.data)
        for rng in ("bytes=0-", "bytes=-64"):
            assert_clean(tb.call("GET", "files/download", {"path": path},
                                 headers={"Range": rng}), secrets)
    r = tb.ok("POST", "files/bulk-download", json={"paths": READ_PATHS})
    assert_clean(r, secrets)
    # The planted links themselves: absolute targets land in the view.
    assert tb.call("GET", "files/download", {"path": "/home/daytona/shadow"}).status == 404
    assert tb.call("GET", "files/download", {"path": "/home/daytona/token_abs"}).status == 404
    assert tb.call("GET", "files/download", {"path": "/home/daytona/loop_a"}).status == 400
    # "up" is the view's root: listing through it shows the sandbox's own tree.
    up = {e["name"] for e in tb.ok("GET", "files", {"path": "/home/daytona/up"}).data}
    assert {"home", "etc", "usr", "tmp"} <= up and "sandboxes" not in up and "token" not in up
    assert "shadow" not in {e["name"] for e in tb.ok("GET", "files", {"path": "/home/daytona/hostetc"}).data}


def test_listings_and_searches_skip_escaping_links(planted):
    q, tb, links, secrets = planted
    r = tb.ok("GET", "files", {"path": "/home/daytona"})
    assert_clean(r, secrets)
    names = {e["name"] for e in r.data}
    # Links whose target is missing in the view are skipped (stat fails).
    for broken in ("shadow", "shadow_rel", "token_abs", "token_rel", "token_rel2", "statedir",
                   "proc_root", "usr_up", "loop_a", "loop_b"):
        assert broken not in names, broken
    assert {"up", "hostetc", "hostroot", "d1"} <= names
    prefix = q.token[:16]
    for route, params in (("files/find", {"path": "/home/daytona", "pattern": prefix}),
                          ("files/find", {"path": "/etc", "pattern": "root:"}),
                          ("files/find", {"path": "/home/daytona/d1", "pattern": ":"}),
                          ("files/search", {"path": "/home/daytona", "pattern": "*token*"}),
                          ("files/search", {"path": "/home/daytona/up/etc", "pattern": "*shadow*"})):
        r = tb.call("GET", route, params)
        assert_clean(r, secrets)
    assert tb.ok("GET", "files/find", {"path": "/home/daytona", "pattern": prefix}).data == []
    assert tb.ok("GET", "files/search", {"path": "/home/daytona/up/etc",
                                         "pattern": "*shadow*"}).data == {"files": []}


def test_writes_through_links_stay_inside(planted):
    q, tb, links, secrets = planted
    shadow_before = host_file_fingerprint("/etc/shadow") if os.path.exists("/etc/shadow") else None
    passwd_before = host_file_fingerprint("/etc/passwd")
    token_before = host_file_fingerprint(q.state_dir / "token")
    root_prefix = os.path.join("sandboxes", tb.id, "root") + os.sep
    before = {k: v for k, v in state_tree(q.state_dir).items() if not k.startswith(root_prefix)}

    ctype, body = multipart([("file", b"PWNED", "x")])
    for path in ("/home/daytona/shadow", "/home/daytona/shadow_rel", "/home/daytona/token_abs",
                 "/home/daytona/token_rel", "/home/daytona/statedir/token",
                 "/home/daytona/hostetc/passwd", "/home/daytona/up/etc/passwd",
                 "/home/daytona/d1/d2/deep/token", "/home/daytona/upup/x/y",
                 "/../../../../token", "/home/daytona/proc_cwd/token"):
        r = tb.call("POST", "files/upload-v2", {"path": path}, body=b"PWNED",
                    headers={"Content-Type": "application/octet-stream"})
        assert r.status in (200, 400, 403, 404), (path, r.status, r.data)
        tb.call("POST", "files/upload", {"path": path}, body=body,
                headers={"Content-Type": ctype})
        tb.call("POST", "files/folder", {"path": path + ".d", "mode": "0777"})
        tb.call("POST", "files/permissions", {"path": path, "mode": "0777"})
        tb.call("POST", "files/replace", json={"files": [path], "pattern": "root",
                                               "newValue": "PWNED"})
    ctype, body = multipart([("files[0].path", "/home/daytona/token_rel2", None),
                             ("files[0].file", b"PWNED", "t")])
    tb.call("POST", "files/bulk-upload", body=body, headers={"Content-Type": ctype})
    # Deleting through a link removes the link or the view's file, never the host's.
    for path in ("/home/daytona/hostetc/hosts", "/home/daytona/up/etc/hostname",
                 "/home/daytona/statedir/token", "/home/daytona/token_abs"):
        tb.call("DELETE", "files", {"path": path, "recursive": "true"})
    # Moves: out through a link, and the link itself somewhere else.
    tb.call("POST", "files/move", {"source": "/home/daytona/hostetc/passwd",
                                   "destination": "/home/daytona/statedir/passwd"})
    tb.call("POST", "files/move", {"source": "/home/daytona/hostroot/etc/group",
                                   "destination": "/home/daytona/up/../../../../group"})

    if shadow_before:
        assert host_file_fingerprint("/etc/shadow") == shadow_before
    assert host_file_fingerprint("/etc/passwd") == passwd_before
    assert host_file_fingerprint(q.state_dir / "token") == token_before
    after = {k: v for k, v in state_tree(q.state_dir).items() if not k.startswith(root_prefix)}
    assert before == after, "a write left the sandbox's root:\n" + tree_diff(before, after)
    # What was written through a link landed in the sandbox's own tree.
    assert (tb.root / "etc/shadow").read_bytes() in (b"PWNED",)


def test_hard_link_attempt_through_the_api(planted):
    """The API has no link endpoint; moving or copying a link to the token
    carries the link (resolved in the view), never the token's inode."""
    q, tb, links, secrets = planted
    token_before = host_file_fingerprint(q.state_dir / "token")
    tb.ok("POST", "files/move", {"source": "/home/daytona/token_abs",
                                 "destination": "/workspace/stolen"})
    assert os.path.islink(tb.root / "workspace/stolen")
    r = tb.call("GET", "files/download", {"path": "/workspace/stolen"})
    assert r.status == 404
    assert_clean(r, secrets)
    # A move across into a volume copies (a different filesystem in the view): still a link.
    assert host_file_fingerprint(q.state_dir / "token") == token_before
    assert os.stat(q.state_dir / "token").st_nlink == 1
    for route in ("files/link", "files/hardlink", "files/copy"):
        assert tb.call("POST", route, {"source": "/home/daytona/token_abs",
                                       "destination": "/workspace/x"}).status == 404


def test_volume_subpaths_cannot_leave_their_volume(make_quaverd):
    q = make_quaverd()
    vol = create_volume(q)
    for sub in ("../x", "a/../../x", "..", "a/..", "/etc", "./a", "a//b"):
        r = q.request("POST", "/sandbox", json={"volumes": [
            {"volumeId": vol["id"], "mountPath": "/home/daytona/v", "subpath": sub}]})
        assert r.status == 400, (sub, r.status, r.data)
    # A symlink planted in the volume (by another sandbox mounting it) is not followed
    # when a subpath is created at create time.
    data = q.state_dir / "volumes" / vol["id"] / "data"
    os.symlink("/etc", data / "evil")
    q.expect_log(r"creating subpath 'evil/sub'")
    r = q.request("POST", "/sandbox", json={"volumes": [
        {"volumeId": vol["id"], "mountPath": "/home/daytona/v", "subpath": "evil/sub"}]})
    assert r.status != 200 or r.data.get("state") == "error", r.data
    assert not os.path.exists("/etc/sub")
    # A subpath replaced by a symlink after the sandbox started: the toolbox refuses to
    # serve that sandbox rather than follow it.
    tb = sandbox_toolbox(q, volumes=[{"volumeId": vol["id"], "mountPath": "/home/daytona/v",
                                      "subpath": "good"}])
    tb.upload("/home/daytona/v/f.txt", b"ok")
    os.rename(data / "good", data / "good.moved")
    os.symlink("/etc", data / "good")
    q.expect_log(r"cannot open volume")
    # The runtime may (re)build the namespace meanwhile: it refuses the swapped subpath too.
    q.expect_log(r"its processes cannot start: bubblewrap failed")
    r = tb.call("GET", "files/download", {"path": "/home/daytona/v/passwd"})
    assert r.status >= 400
    assert b"root:x:0:0" not in r.raw
    r = tb.call("POST", "files/upload-v2", {"path": "/home/daytona/v/owned"}, body=b"x",
                headers={"Content-Type": "application/octet-stream"})
    assert r.status >= 400
    assert not os.path.exists("/etc/owned")
