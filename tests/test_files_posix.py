"""POSIX behaviour of files/ (issue 4, fs-layout.md "files/"), with a local
directory as the control: every test runs twice, once in a temp directory
on the local disk and once in sandboxes/fx/files/home/daytona/<test> on a
real quaverfs mount over a real quaverd, and asserts the same observable
result on both. On the mount, what the sandbox holds afterwards (the
toolbox API's download) is checked too where a test changes content.
"""

import ctypes
import errno
import os
import stat as statmod
import threading
import time

import pytest

from files_helpers import (ATTR_TIMEOUT, bounded, file_sha, files_session, pattern_block,
                           stream_sha, write_stream)
from files_helpers import root  # noqa: F401 (the fixture: local dir, then files/)

UID, GID = os.getuid(), os.getgid()

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE = 1


@pytest.fixture(scope="module")
def fenv(tmp_path_factory, request):
    yield from files_session(tmp_path_factory.mktemp("posix"), request)


# ---- helpers ------------------------------------------------------------------

def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def write_file(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def pread_all(fd, size):
    return os.pread(fd, size, 0)


def in_sandbox(r, rel, expected):
    """On the mount: the sandbox holds exactly @expected at @rel (the toolbox
    API's download, byte for byte); locally, the file holds it."""
    if r.on_mount:
        got = r.env.tb.download(r.env.vpath(r / rel))
    else:
        got = read_all(r / rel)
    assert got == expected, f"{r.kind}: {rel} holds {got[:64]!r}... ({len(got)} bytes), " \
                            f"expected {expected[:64]!r}... ({len(expected)} bytes)"


def settle(r):
    """Past the attribute timeout, and on the mount every cache dropped, so
    what follows is read back from the sandbox, not from quaverfs's memory."""
    time.sleep(ATTR_TIMEOUT + 0.2)
    if r.on_mount:
        r.env.flush()


def renameat2(old, new, flags):
    """renameat2(2); returns 0 or the errno."""
    rc = libc.renameat2(AT_FDCWD, os.fsencode(str(old)), AT_FDCWD, os.fsencode(str(new)),
                        ctypes.c_uint(flags))
    return 0 if rc == 0 else ctypes.get_errno()


def errno_of(fn, *args):
    try:
        fn(*args)
        return 0
    except OSError as e:
        return e.errno


# ---- create, write, append, truncate ---------------------------------------------

@bounded(60)
def test_create(root):
    p = root / "new.txt"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.close(fd)
    st = os.stat(p)
    assert statmod.S_ISREG(st.st_mode)
    assert st.st_size == 0
    assert statmod.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (UID, GID)
    assert os.listdir(root.path) == ["new.txt"]
    # O_EXCL on an existing name
    assert errno_of(os.open, p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644) == errno.EEXIST
    # open without O_CREAT of a missing name
    assert errno_of(os.open, root / "missing", os.O_RDONLY) == errno.ENOENT
    in_sandbox(root, "new.txt", b"")
    settle(root)
    st = os.stat(p)
    assert (st.st_size, statmod.S_IMODE(st.st_mode)) == (0, 0o640)


@bounded(60)
def test_write_at_offsets_sparse(root):
    p = root / "sparse.bin"
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        assert os.pwrite(fd, b"tail", 3 << 20) == 4
        assert os.pwrite(fd, b"head", 0) == 4
        assert os.pwrite(fd, b"mid", 1 << 20) == 3
        assert os.fstat(fd).st_size == (3 << 20) + 4
    finally:
        os.close(fd)
    expected = bytearray((3 << 20) + 4)
    expected[0:4] = b"head"
    expected[1 << 20:(1 << 20) + 3] = b"mid"
    expected[3 << 20:] = b"tail"
    expected = bytes(expected)
    assert os.stat(p).st_size == len(expected)
    assert read_all(p) == expected
    in_sandbox(root, "sparse.bin", expected)
    settle(root)
    assert read_all(p) == expected
    # a write past the end of an existing file, reopened
    fd = os.open(p, os.O_WRONLY)
    try:
        os.pwrite(fd, b"more", (4 << 20))
    finally:
        os.close(fd)
    expected = expected + bytes((4 << 20) - len(expected)) + b"more"
    assert read_all(p) == expected
    in_sandbox(root, "sparse.bin", expected)


@bounded(60)
def test_append(root):
    p = root / "log.txt"
    write_file(p, b"one\n")
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"two\n")
        os.write(fd, b"three\n")
    finally:
        os.close(fd)
    assert read_all(p) == b"one\ntwo\nthree\n"
    # two appenders interleaved: every write lands at the end
    a = os.open(p, os.O_WRONLY | os.O_APPEND)
    b = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(a, b"a1\n")
        os.write(b, b"b1\n")
        os.write(a, b"a2\n")
    finally:
        os.close(a)
        os.close(b)
    want = b"one\ntwo\nthree\na1\nb1\na2\n"
    assert read_all(p) == want
    # the shell's >>
    with open(p, "ab") as f:
        f.write(b"shell\n")
    want += b"shell\n"
    assert read_all(p) == want
    in_sandbox(root, "log.txt", want)
    settle(root)
    assert read_all(p) == want


@bounded(60)
def test_truncate_path(root):
    p = root / "t.bin"
    write_file(p, b"0123456789")
    os.truncate(p, 4)
    assert os.stat(p).st_size == 4
    assert read_all(p) == b"0123"
    in_sandbox(root, "t.bin", b"0123")
    os.truncate(p, 100)
    assert os.stat(p).st_size == 100
    assert read_all(p) == b"0123" + bytes(96)
    in_sandbox(root, "t.bin", b"0123" + bytes(96))
    os.truncate(p, 0)
    assert read_all(p) == b""
    in_sandbox(root, "t.bin", b"")
    settle(root)
    assert os.stat(p).st_size == 0


@bounded(60)
def test_ftruncate(root):
    p = root / "ft.bin"
    write_file(p, b"abcdefghij")
    fd = os.open(p, os.O_RDWR)
    try:
        os.ftruncate(fd, 3)
        assert os.fstat(fd).st_size == 3
        assert pread_all(fd, 100) == b"abc"
        os.ftruncate(fd, 8)
        assert pread_all(fd, 100) == b"abc" + bytes(5)
        os.pwrite(fd, b"Z", 7)
        assert os.fstat(fd).st_size == 8
    finally:
        os.close(fd)
    assert read_all(p) == b"abc\0\0\0\0Z"
    in_sandbox(root, "ft.bin", b"abc\0\0\0\0Z")
    settle(root)
    assert read_all(p) == b"abc\0\0\0\0Z"


@bounded(60)
def test_o_trunc(root):
    p = root / "ot.txt"
    write_file(p, b"a long first version\n")
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.fstat(fd).st_size == 0
        os.write(fd, b"short\n")
    finally:
        os.close(fd)
    assert read_all(p) == b"short\n"
    in_sandbox(root, "ot.txt", b"short\n")
    # O_TRUNC and nothing written: empty
    os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))
    assert os.stat(p).st_size == 0
    in_sandbox(root, "ot.txt", b"")
    # the shell's >
    with open(p, "wb") as f:
        f.write(b"again\n")
    settle(root)
    assert read_all(p) == b"again\n"


# ---- rename ------------------------------------------------------------------------

@bounded(60)
def test_rename_over_existing(root):
    old, new = root / "new.tmp", root / "file.txt"
    write_file(new, b"old content\n", 0o600)
    write_file(old, b"new content\n", 0o644)
    os.rename(old, new)
    assert sorted(os.listdir(root.path)) == ["file.txt"]
    assert read_all(new) == b"new content\n"
    assert statmod.S_IMODE(os.stat(new).st_mode) == 0o644
    assert errno_of(os.stat, old) == errno.ENOENT
    in_sandbox(root, "file.txt", b"new content\n")
    # the editor's atomic save, in a loop
    for i in range(5):
        write_file(old, b"version %d\n" % i)
        os.rename(old, new)
        assert read_all(new) == b"version %d\n" % i
    settle(root)
    assert sorted(os.listdir(root.path)) == ["file.txt"]
    assert read_all(new) == b"version 4\n"
    in_sandbox(root, "file.txt", b"version 4\n")
    # a directory over an empty directory; over a non-empty one: ENOTEMPTY
    os.mkdir(root / "d1")
    os.mkdir(root / "d2")
    write_file(root / "d1" / "x", b"x")
    os.rename(root / "d1", root / "d2")
    assert os.listdir(root / "d2") == ["x"]
    os.mkdir(root / "d3")
    write_file(root / "d3" / "y", b"y")
    assert errno_of(os.rename, root / "d3", root / "d2") in (errno.ENOTEMPTY, errno.EEXIST)
    # a file over a directory and a directory over a file
    assert errno_of(os.rename, new, root / "d2") == errno.EISDIR
    assert errno_of(os.rename, root / "d3", new) == errno.ENOTDIR
    assert read_all(new) == b"version 4\n"
    assert os.listdir(root / "d3") == ["y"]


@bounded(60)
def test_rename_into_other_directory(root):
    os.makedirs(root / "a" / "deep")
    os.mkdir(root / "b")
    write_file(root / "a" / "f.txt", b"moved\n")
    write_file(root / "a" / "deep" / "g.txt", b"deeper\n")
    os.rename(root / "a" / "f.txt", root / "b" / "f2.txt")
    assert os.listdir(root / "a") == ["deep"]
    assert os.listdir(root / "b") == ["f2.txt"]
    assert read_all(root / "b" / "f2.txt") == b"moved\n"
    in_sandbox(root, "b/f2.txt", b"moved\n")
    # a whole directory with its content
    os.rename(root / "a" / "deep", root / "b" / "deep")
    assert os.listdir(root / "a") == []
    assert read_all(root / "b" / "deep" / "g.txt") == b"deeper\n"
    assert errno_of(os.stat, root / "a" / "deep" / "g.txt") == errno.ENOENT
    # into a missing directory
    assert errno_of(os.rename, root / "b" / "f2.txt", root / "nope" / "f") == errno.ENOENT
    # a directory into itself
    assert errno_of(os.rename, root / "b", root / "b" / "deep" / "b") == errno.EINVAL
    settle(root)
    assert sorted(os.listdir(root / "b")) == ["deep", "f2.txt"]
    assert read_all(root / "b" / "deep" / "g.txt") == b"deeper\n"
    in_sandbox(root, "b/deep/g.txt", b"deeper\n")


@bounded(60)
def test_rename_noreplace(root):
    a, b, c = root / "a", root / "b", root / "c"
    write_file(a, b"A")
    write_file(b, b"B")
    assert renameat2(a, b, RENAME_NOREPLACE) == errno.EEXIST
    assert read_all(a) == b"A" and read_all(b) == b"B"
    assert renameat2(a, c, RENAME_NOREPLACE) == 0
    assert sorted(os.listdir(root.path)) == ["b", "c"]
    assert read_all(c) == b"A"
    # mv -n does not overwrite either
    r = os.system(f"mv -n '{c}' '{b}' 2>/dev/null")
    assert read_all(b) == b"B" and read_all(c) == b"A", r
    settle(root)
    assert sorted(os.listdir(root.path)) == ["b", "c"]
    in_sandbox(root, "b", b"B")
    in_sandbox(root, "c", b"A")


# ---- unlink --------------------------------------------------------------------------

@bounded(60)
def test_unlink_open_file(root):
    p = root / "open.txt"
    content = b"still readable\n" * 1000
    write_file(p, content)
    settle(root)
    fd = os.open(p, os.O_RDONLY)
    try:
        os.unlink(p)
        assert errno_of(os.stat, p) == errno.ENOENT
        assert p.name not in os.listdir(root.path)
        # reads through the open descriptor still work, as on a local disk
        assert os.pread(fd, len(content) + 10, 0) == content
        assert os.fstat(fd).st_size == len(content)
    finally:
        os.close(fd)
    assert errno_of(os.stat, p) == errno.ENOENT
    # a writer whose file is unlinked: its close does not bring the file back
    w = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(w, b"first")
        os.unlink(p)
        os.write(w, b" second")
        assert os.pread(w, 100, 0) == b"first second"
    finally:
        os.close(w)
    assert errno_of(os.stat, p) == errno.ENOENT
    settle(root)
    assert errno_of(os.stat, p) == errno.ENOENT
    assert os.listdir(root.path) == []
    if root.on_mount:
        status, _ = root.env.tb.download_status(root.env.vpath(p))
        assert status == 404


# ---- directories ---------------------------------------------------------------------

@bounded(60)
def test_mkdir_p(root):
    deep = root / "a" / "b" / "c" / "d"
    os.makedirs(deep)
    assert os.path.isdir(deep)
    os.makedirs(deep, exist_ok=True)
    r = os.system(f"mkdir -p '{deep}/e/f'")
    assert r == 0
    assert os.listdir(deep) == ["e"]
    assert os.listdir(deep / "e") == ["f"]
    assert statmod.S_ISDIR(os.stat(root / "a").st_mode)
    write_file(deep / "e" / "f" / "leaf", b"leaf")
    settle(root)
    assert os.listdir(deep / "e" / "f") == ["leaf"]
    in_sandbox(root, "a/b/c/d/e/f/leaf", b"leaf")
    # mkdir -p through a file fails
    write_file(root / "file", b"")
    assert errno_of(os.makedirs, root / "file" / "sub") == errno.ENOTDIR


@bounded(60)
def test_rmdir_not_empty(root):
    os.makedirs(root / "full" / "sub")
    write_file(root / "full" / "f", b"x")
    assert errno_of(os.rmdir, root / "full") == errno.ENOTEMPTY
    assert sorted(os.listdir(root / "full")) == ["f", "sub"]
    assert read_all(root / "full" / "f") == b"x"
    # a directory holding only a directory is not empty either
    os.unlink(root / "full" / "f")
    assert errno_of(os.rmdir, root / "full") == errno.ENOTEMPTY
    os.rmdir(root / "full" / "sub")
    os.rmdir(root / "full")
    assert os.listdir(root.path) == []
    # rmdir of a file, unlink of a directory, rmdir of a missing name
    write_file(root / "plain", b"")
    os.mkdir(root / "dir")
    assert errno_of(os.rmdir, root / "plain") == errno.ENOTDIR
    assert errno_of(os.unlink, root / "dir") == errno.EISDIR
    assert errno_of(os.rmdir, root / "missing") == errno.ENOENT
    settle(root)
    assert sorted(os.listdir(root.path)) == ["dir", "plain"]


@bounded(60)
def test_mkdir_existing(root):
    os.mkdir(root / "d")
    assert errno_of(os.mkdir, root / "d") == errno.EEXIST
    write_file(root / "f", b"")
    assert errno_of(os.mkdir, root / "f") == errno.EEXIST
    settle(root)
    assert errno_of(os.mkdir, root / "d") == errno.EEXIST
    assert errno_of(os.mkdir, root / "missing" / "d") == errno.ENOENT
    assert sorted(os.listdir(root.path)) == ["d", "f"]


# ---- metadata --------------------------------------------------------------------------

@bounded(60)
def test_chmod(root):
    p = root / "script.sh"
    write_file(p, b"#!/bin/sh\necho hi\n", 0o644)
    for mode in (0o755, 0o600, 0o640, 0o400, 0o644):
        os.chmod(p, mode)
        assert statmod.S_IMODE(os.stat(p).st_mode) == mode, oct(mode)
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fchmod(fd, 0o700)
        assert statmod.S_IMODE(os.fstat(fd).st_mode) == 0o700
    finally:
        os.close(fd)
    os.mkdir(root / "d")
    os.chmod(root / "d", 0o700)
    settle(root)
    assert statmod.S_IMODE(os.stat(p).st_mode) == 0o700
    assert statmod.S_IMODE(os.stat(root / "d").st_mode) == 0o700
    assert read_all(p) == b"#!/bin/sh\necho hi\n"
    # chmod keeps the content and the owner
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (UID, GID)
    if root.on_mount:
        status, info = root.env.tb.info(root.env.vpath(p))
        assert status == 200 and info["permissions"] == "0700", info


@bounded(60)
def test_utimens(root):
    """utimensat sets the times (tar x, rsync -a, touch -d rely on it)."""
    p = root / "old.txt"
    write_file(p, b"x")
    when = 1_600_000_000_123_456_789
    os.utime(p, ns=(when, when))
    st = os.stat(p)
    assert st.st_mtime_ns == when
    settle(root)
    assert os.stat(p).st_mtime_ns == when
    if root.on_mount:
        # fs-layout.md: the time lives in this mount; the sandbox keeps its own
        status, info = root.env.tb.info(root.env.vpath(p))
        assert status == 200 and not info["modifiedAt"].startswith("2020-"), info
    # a directory's time too
    os.mkdir(root / "d")
    os.utime(root / "d", ns=(when, when))
    assert os.stat(root / "d").st_mtime_ns == when
    # a write ends a time that was set: the file is newer again
    before = time.time_ns()
    with open(p, "ab") as f:
        f.write(b"y")
    assert os.stat(p).st_mtime_ns >= before - 2_000_000_000
    os.utime(p, ns=(when, when))
    assert os.stat(p).st_mtime_ns == when
    # touch with no time: now
    before = time.time_ns()
    os.utime(p)
    assert os.stat(p).st_mtime_ns >= before - 2_000_000_000
    assert read_all(p) == b"xy"


@bounded(60)
def test_inode_kept_after_rename_and_forget(root):
    """An editor's save (a temp file renamed over the file) leaves the file
    with the temp's inode number, and it keeps it once the kernel has
    forgotten the inode (git status compares inode numbers)."""
    doc, tmp = root / "doc.txt", root / ".doc.txt.tmp"
    write_file(doc, b"one\n")
    write_file(tmp, b"two\n")
    os.rename(tmp, doc)
    ino = os.stat(doc).st_ino
    settle(root)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")  # dentries and inodes: the kernel forgets the file's inode
    assert os.stat(doc).st_ino == ino
    assert read_all(doc) == b"two\n"


# ---- handles ------------------------------------------------------------------------------

@bounded(60)
def test_read_after_write_same_handle(root):
    p = root / "raw.bin"
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"hello world")
        assert os.pread(fd, 100, 0) == b"hello world"
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 5) == b"hello"
        os.write(fd, b"_")
        assert os.pread(fd, 100, 0) == b"hello_world"
        big = pattern_block("raw", 0, 3 << 20)
        os.pwrite(fd, big, 1000)
        assert os.pread(fd, len(big), 1000) == big
        assert os.fstat(fd).st_size == 1000 + len(big)
    finally:
        os.close(fd)
    want = b"hello_world" + bytes(1000 - 11) + big
    assert read_all(p) == want
    in_sandbox(root, "raw.bin", want)


@bounded(60)
def test_two_handles_one_file(root):
    p = root / "shared.txt"
    write_file(p, b"........")
    fd1 = os.open(p, os.O_RDWR)
    fd2 = os.open(p, os.O_RDWR)
    try:
        os.pwrite(fd1, b"AAAA", 0)
        assert os.pread(fd2, 100, 0) == b"AAAA...."
        os.pwrite(fd2, b"BB", 2)
        assert os.pread(fd1, 100, 0) == b"AABB...."
        os.close(fd1)
        fd1 = -1
        # a third handle opened after one writer closed sees both writes
        fd3 = os.open(p, os.O_RDONLY)
        try:
            assert os.pread(fd3, 100, 0) == b"AABB...."
        finally:
            os.close(fd3)
        os.pwrite(fd2, b"CC", 6)
    finally:
        if fd1 >= 0:
            os.close(fd1)
        os.close(fd2)
    assert read_all(p) == b"AABB..CC"
    in_sandbox(root, "shared.txt", b"AABB..CC")
    settle(root)
    assert read_all(p) == b"AABB..CC"


@bounded(60)
def test_fsync(root):
    p = root / "synced.txt"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"durable\n")
        os.fsync(fd)
        os.fdatasync(fd)
        # the data is in the sandbox once fsync returned, before close
        in_sandbox(root, "synced.txt", b"durable\n")
        os.write(fd, b"more\n")
        os.fsync(fd)
        in_sandbox(root, "synced.txt", b"durable\nmore\n")
    finally:
        os.close(fd)
    # fsync of a directory and of a read-only handle
    dfd = os.open(root.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    rfd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(rfd)
    finally:
        os.close(rfd)
    assert read_all(p) == b"durable\nmore\n"


# ---- size and scale -------------------------------------------------------------------------

BIG = 512 << 20


@bounded(170)
def test_large_file_round_trip(root):
    p = root / "big.bin"
    t0 = time.monotonic()
    written = write_stream(p, "big", BIG)
    assert written == stream_sha("big", BIG)
    assert os.stat(p).st_size == BIG
    settle(root)
    got, size = file_sha(p)
    assert (got, size) == (written, BIG)
    if root.on_mount:
        status, remote, rsize = root.env.tb.download_sha(root.env.vpath(p))
        assert (status, remote, rsize) == (200, written, BIG)
    # a read in the middle, with an offset that is not block-aligned
    with open(p, "rb") as f:
        f.seek((300 << 20) + 123)
        chunk = f.read(4096)
    block = pattern_block("big", 300) + pattern_block("big", 301)
    assert chunk == block[123:123 + 4096]
    os.unlink(p)
    elapsed = time.monotonic() - t0
    print(f"{root.kind}: 512 MiB round trip in {elapsed:.1f} s")


N_ENTRIES = 10_000


@bounded(170)
def test_10k_entry_listing(root):
    d = root / "many"
    os.mkdir(d)
    names = [f"f{i:05d}.txt" for i in range(N_ENTRIES)]
    from concurrent.futures import ThreadPoolExecutor

    def make(chunk):
        for n in chunk:
            os.close(os.open(d / n, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))

    chunks = [names[i::8] for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make, chunks))
    listed = os.listdir(d)
    assert len(listed) == N_ENTRIES
    assert sorted(listed) == names
    settle(root)
    with os.scandir(d) as it:
        entries = {e.name: e for e in it}
    assert sorted(entries) == names
    assert all(e.is_file(follow_symlinks=False) for e in entries.values())
    # ls sees the same count
    r = os.popen(f"ls -1 '{d}' | wc -l").read().strip()
    assert r == str(N_ENTRIES)


@bounded(120)
def test_concurrent_writers(root):
    size = 8 << 20
    results, errors = {}, []

    def writer(i):
        try:
            results[i] = write_stream(root / f"w{i}.bin", f"writer{i}", size)
        except Exception as e:  # reported below
            errors.append((i, e))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    settle(root)
    assert sorted(os.listdir(root.path)) == sorted(f"w{i}.bin" for i in range(8))
    for i in range(8):
        assert file_sha(root / f"w{i}.bin") == (results[i], size), i
        if root.on_mount:
            vp = root.env.vpath(root / f"w{i}.bin")
            assert root.env.tb.download_sha(vp) == (200, results[i], size), i


@bounded(60)
def test_stat_stable(root):
    p = root / "stable.txt"
    write_file(p, b"content that stays\n")
    os.mkdir(root / "dir")

    def key(path):
        st = os.stat(path)
        return (st.st_ino, st.st_size, st.st_mtime_ns, statmod.S_IFMT(st.st_mode),
                statmod.S_IMODE(st.st_mode), st.st_uid, st.st_gid)

    first = key(p)
    dfirst = key(root / "dir")
    assert key(p) == first
    time.sleep(ATTR_TIMEOUT + 0.2)
    assert key(p) == first
    assert key(root / "dir") == dfirst
    # a read does not change them, nor does a listing
    read_all(p)
    with os.scandir(root.path) as it:
        inos = {e.name: e.inode() for e in it}
    assert inos["stable.txt"] == first[0]
    assert inos["dir"] == dfirst[0]
    assert key(p) == first
    settle(root)
    assert key(p) == first
    assert key(root / "dir") == dfirst
    # mtime moves forward on a write, and the new value is stable in turn
    time.sleep(0.05)
    with open(p, "ab") as f:
        f.write(b"more\n")
    second = key(p)
    assert second[0] == first[0]
    assert second[1] == first[1] + 5
    assert second[2] > first[2]
    settle(root)
    assert key(p) == second
    # distinct files have distinct inode numbers
    write_file(root / "other.txt", b"x")
    assert key(root / "other.txt")[0] not in (first[0], dfirst[0])
