"""Close-to-open between files/ and the sandbox (issue 4 acceptance,
"Visibility"): what is written through the mount is what the toolbox API
returns, byte for byte; what is uploaded through the API shows in files/
(a new name within the attribute timeout, a changed file at the next open).
The API is spoken directly: GET {toolboxProxyUrl}/{id}/files/download and
POST .../files/upload-v2 with a raw body.
"""

import errno
import os
import time

import pytest

from files_helpers import (ATTR_TIMEOUT, HOME, VISIBLE_WITHIN, bounded, files_session,
                           pattern_block, sha, wait_for, write_stream)


@pytest.fixture(scope="module")
def fenv(tmp_path_factory, request):
    yield from files_session(tmp_path_factory.mktemp("visibility"), request)


@pytest.fixture
def vdir(fenv, request):
    """A fresh directory under files/home/daytona, and its sandbox path."""
    name = request.node.originalname
    path = fenv.home / name
    os.mkdir(path)
    return path, f"{HOME}/{name}"


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def errno_of(fn, *args):
    try:
        fn(*args)
        return 0
    except OSError as e:
        return e.errno


ALL_BYTES = bytes(range(256)) * 64 + b"\r\n\0\xff" + "ünïcödé\n".encode()


@bounded(60)
def test_written_through_mount_is_downloaded_byte_for_byte(fenv, vdir):
    path, vp = vdir
    cases = {
        "empty": b"",
        "one": b"x",
        "all-bytes.bin": ALL_BYTES,
        "no-newline.txt": b"last line without newline",
        "name with spaces.txt": b"spaces\n",
        "ünï.txt": b"utf-8 name\n",
        "five-mib.bin": pattern_block("vis", 0, 5 << 20),
    }
    for name, data in cases.items():
        with open(path / name, "wb") as f:
            f.write(data)
    # close returned: the sandbox has each file, whole
    for name, data in cases.items():
        got = fenv.tb.download(f"{vp}/{name}")
        assert len(got) == len(data) and got == data, name
    listed = {e["name"]: e for e in fenv.tb.listing(vp)}
    assert sorted(listed) == sorted(cases)
    for name, data in cases.items():
        assert listed[name]["size"] == len(data) and not listed[name]["isDir"], listed[name]
    # a nested directory made through the mount is a directory in the sandbox
    os.makedirs(path / "a" / "b")
    with open(path / "a" / "b" / "c.txt", "wb") as f:
        f.write(b"nested\n")
    assert fenv.tb.download(f"{vp}/a/b/c.txt") == b"nested\n"
    status, info = fenv.tb.info(f"{vp}/a/b")
    assert status == 200 and info["isDir"] is True, info


@bounded(60)
def test_fsync_uploads_before_close(fenv, vdir):
    path, vp = vdir
    fd = os.open(path / "f.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"first\n")
        os.fsync(fd)
        assert fenv.tb.download(f"{vp}/f.txt") == b"first\n"
        os.write(fd, b"second\n")
        os.fsync(fd)
        assert fenv.tb.download(f"{vp}/f.txt") == b"first\nsecond\n"
    finally:
        os.close(fd)


@bounded(60)
def test_nothing_shared_before_close(fenv, vdir):
    """fs-layout.md, Deviations: nothing is shared until close() or
    fsync(); a new file exists in the sandbox from its first close, with
    the mode asked."""
    path, vp = vdir
    fd = os.open(path / "new.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"not yet\n")
        assert fenv.tb.download_status(f"{vp}/new.txt")[0] == 404
    finally:
        os.close(fd)
    assert fenv.tb.download(f"{vp}/new.txt") == b"not yet\n"
    status, info = fenv.tb.info(f"{vp}/new.txt")
    assert status == 200 and info["permissions"] == "0600", info
    # touch makes an empty file there
    r = os.system(f"touch '{path}/touched'")
    assert r == 0
    assert fenv.tb.download(f"{vp}/touched") == b""
    # a write to an existing file shows at close
    fd = os.open(path / "new.txt", os.O_WRONLY)
    try:
        os.write(fd, b"NOT")
        assert fenv.tb.download(f"{vp}/new.txt") == b"not yet\n"
    finally:
        os.close(fd)
    assert fenv.tb.download(f"{vp}/new.txt") == b"NOT yet\n"


@bounded(60)
def test_truncation_reaches_the_sandbox(fenv, vdir):
    """fs-layout.md, truncate row: on a handle (O_TRUNC, ftruncate) the
    copy is sent at close; truncate(2) on a path before it returns."""
    path, vp = vdir
    p = path / "t.txt"
    old = b"old content, which stays until close\n"
    with open(p, "wb") as f:
        f.write(old)
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    try:
        assert fenv.tb.download(f"{vp}/t.txt") == old, "O_TRUNC reached the sandbox at open"
        os.write(fd, b"new\n")
        assert fenv.tb.download(f"{vp}/t.txt") == old
    finally:
        os.close(fd)
    assert fenv.tb.download(f"{vp}/t.txt") == b"new\n"
    fd = os.open(p, os.O_RDWR)
    try:
        os.ftruncate(fd, 2)
        assert fenv.tb.download(f"{vp}/t.txt") == b"new\n", \
            "ftruncate reached the sandbox before close"
    finally:
        os.close(fd)
    assert fenv.tb.download(f"{vp}/t.txt") == b"ne"
    os.truncate(p, 1)
    assert fenv.tb.download(f"{vp}/t.txt") == b"n"
    os.truncate(p, 5)
    assert fenv.tb.download(f"{vp}/t.txt") == b"n\0\0\0\0"


@bounded(60)
def test_changes_through_mount_reach_the_sandbox(fenv, vdir):
    """rename, unlink, truncate, chmod, rmdir made through files/ are what
    the sandbox then has."""
    path, vp = vdir
    with open(path / "a.txt", "wb") as f:
        f.write(b"a content\n")
    os.rename(path / "a.txt", path / "b.txt")
    assert fenv.tb.download_status(f"{vp}/a.txt")[0] == 404
    assert fenv.tb.download(f"{vp}/b.txt") == b"a content\n"
    os.truncate(path / "b.txt", 1)
    assert fenv.tb.download(f"{vp}/b.txt") == b"a"
    os.chmod(path / "b.txt", 0o751)
    status, info = fenv.tb.info(f"{vp}/b.txt")
    assert status == 200 and info["permissions"] == "0751", info
    os.unlink(path / "b.txt")
    assert fenv.tb.download_status(f"{vp}/b.txt")[0] == 404
    os.mkdir(path / "d")
    os.rmdir(path / "d")
    assert fenv.tb.info(f"{vp}/d")[0] == 404
    assert fenv.tb.listing(vp) == []


@bounded(60)
def test_uploaded_through_api_appears(fenv, vdir):
    path, vp = vdir
    # the directory is listed (and cached) empty first
    assert os.listdir(path) == []
    assert errno_of(os.stat, path / "up.bin") == errno.ENOENT  # a negative entry, cached
    data = ALL_BYTES * 3
    t0 = time.monotonic()
    fenv.tb.upload(f"{vp}/up.bin", data)
    wait_for(lambda: "up.bin" in os.listdir(path), VISIBLE_WITHIN, what="up.bin listed")
    wait_for(lambda: errno_of(os.stat, path / "up.bin") == 0, VISIBLE_WITHIN,
             what="up.bin found by stat")
    elapsed = time.monotonic() - t0
    assert elapsed <= VISIBLE_WITHIN + 0.5
    assert os.stat(path / "up.bin").st_size == len(data)
    assert read_all(path / "up.bin") == data
    # upload-v2 creates parents: a new directory with a file in it
    fenv.tb.upload(f"{vp}/new/dir/deep.txt", b"deep\n")
    wait_for(lambda: "new" in os.listdir(path), VISIBLE_WITHIN, what="new/ listed")
    assert os.listdir(path / "new" / "dir") == ["deep.txt"]
    assert read_all(path / "new" / "dir" / "deep.txt") == b"deep\n"
    # a large upload, read back through the mount
    big = pattern_block("vis-up", 0, 16 << 20)
    fenv.tb.upload(f"{vp}/big.bin", big)
    wait_for(lambda: errno_of(os.stat, path / "big.bin") == 0, VISIBLE_WITHIN,
             what="big.bin found")
    assert sha(read_all(path / "big.bin")) == sha(big)


@bounded(60)
def test_api_change_seen_at_next_open(fenv, vdir):
    path, vp = vdir
    p = path / "c.txt"
    with open(p, "wb") as f:
        f.write(b"version one\n")
    assert read_all(p) == b"version one\n"  # now in quaverfs's caches
    st1 = os.stat(p)
    # same size, new content: only the mtime tells
    time.sleep(0.05)
    fenv.tb.upload(f"{vp}/c.txt", b"version two\n")
    # fs-layout.md (Consistency): an open trusts what this mount learnt of the
    # file in the last second; after that it asks, and the change is seen
    assert read_all(p) in (b"version one\n", b"version two\n")
    time.sleep(ATTR_TIMEOUT + 0.1)
    assert read_all(p) == b"version two\n"
    # another size
    fenv.tb.upload(f"{vp}/c.txt", b"version three, longer\n")
    time.sleep(ATTR_TIMEOUT + 0.1)
    assert read_all(p) == b"version three, longer\n"
    st2 = os.stat(p)
    assert st2.st_size == len(b"version three, longer\n")
    assert st2.st_mtime_ns >= st1.st_mtime_ns
    assert st2.st_ino == st1.st_ino
    # a file open across the change keeps reading the version it opened,
    # or the new one whole: never a mix of both
    old = pattern_block("mix", 0, 4 << 20)
    new = pattern_block("mix", 1, 4 << 20)
    fenv.tb.upload(f"{vp}/mix.bin", old)
    wait_for(lambda: errno_of(os.stat, path / "mix.bin") == 0, VISIBLE_WITHIN, what="mix.bin")
    with open(path / "mix.bin", "rb") as f:
        head = f.read(1 << 20)
        fenv.tb.upload(f"{vp}/mix.bin", new)
        rest = f.read()
    got = head + rest
    assert got in (old, new), "a reader saw a mix of two versions"
    time.sleep(ATTR_TIMEOUT + 0.1)
    assert read_all(path / "mix.bin") == new


@bounded(60)
def test_api_delete_and_move_seen(fenv, vdir):
    path, vp = vdir
    with open(path / "gone.txt", "wb") as f:
        f.write(b"bye\n")
    with open(path / "moved.txt", "wb") as f:
        f.write(b"moving\n")
    assert sorted(os.listdir(path)) == ["gone.txt", "moved.txt"]
    fenv.tb.delete(f"{vp}/gone.txt")
    status, raw, _ = fenv.tb.request("POST", "files/move", source=f"{vp}/moved.txt",
                                     destination=f"{vp}/there.txt")
    assert status == 200, raw
    wait_for(lambda: sorted(os.listdir(path)) == ["there.txt"], VISIBLE_WITHIN,
             what="listing after delete and move")
    wait_for(lambda: errno_of(os.stat, path / "gone.txt") == errno.ENOENT, VISIBLE_WITHIN,
             what="gone.txt ENOENT")
    assert errno_of(read_all, path / "moved.txt") == errno.ENOENT
    assert read_all(path / "there.txt") == b"moving\n"


@bounded(60)
def test_sandbox_home_as_the_api_lists_it(fenv):
    """files/ shows the sandbox's tree from its root: the same names the
    API lists for /, /home/daytona and /tmp."""
    for vp in ("/", HOME, "/tmp"):
        api = sorted(e["name"] for e in fenv.tb.listing(vp))
        mount = sorted(os.listdir(fenv.mount_path(vp)))
        assert mount == api, vp
    status, raw, _ = fenv.tb.request("GET", "user-home-dir")
    assert status == 200 and b"/home/daytona" in raw
    assert os.path.isdir(fenv.home)


@bounded(120)
def test_large_written_file_downloads_whole(fenv, vdir):
    path, vp = vdir
    size = 64 << 20
    written = write_stream(path / "large.bin", "vis-large", size)
    assert fenv.tb.download_sha(f"{vp}/large.bin") == (200, written, size)
    # a ranged download of the middle is those bytes
    status, raw, headers = fenv.tb.request("GET", "files/download",
                                           headers={"Range": "bytes=1048576-1048591"},
                                           path=f"{vp}/large.bin")
    assert status == 206 and raw == pattern_block("vis-large", 1)[:16], (status, headers)


def pty_expect(fd, pattern, timeout=15.0):
    """Reads the pty node until @pattern (bytes regex) shows; returns what came."""
    import re
    import select
    rx, out = re.compile(pattern), b""
    deadline = time.monotonic() + timeout
    while not rx.search(out):
        left = deadline - time.monotonic()
        assert left > 0, f"{pattern!r} not seen in {timeout} s; got {out[-400:]!r}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"EOF before {pattern!r}; got {out[-400:]!r}"
            out += chunk
    return out


@bounded(60)
def test_a_command_typed_into_the_pty_is_seen_at_once(fenv, vdir):
    """fs-layout.md (files/, Consistency): what this mount's own terminals
    did is seen at once: a file a command typed into the pty node rewrote
    (same size) is read anew by an open right after, though files/ had
    learnt its attributes a moment before."""
    path, vp = vdir
    target = path / "typed.txt"
    fd = os.open(fenv.m.path("sandboxes", fenv.sandbox, "pty"), os.O_RDWR)
    try:
        pty_expect(fd, rb"\$ ")
        for n in range(3):
            with open(target, "wb") as f:
                f.write(b"old%d\n" % n)
            assert read_all(target) == b"old%d\n" % n
            os.write(fd, f"echo new{n} > {vp}/typed.txt; echo done-$((40+{n}))\n".encode())
            pty_expect(fd, b"done-%d" % (40 + n))
            assert read_all(target) == b"new%d\n" % n
    finally:
        os.close(fd)
