"""quaverd dies under an upload (issue 4 acceptance, "Faults"): close()
fails with EIO, the staged copy is kept (fs-layout.md "files/" says where),
the sandbox never shows a half-written file, and once quaverd is back the
next fsync/close of the file uploads the kept copy.
"""

import errno
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from files_helpers import (CHUNK, HOME, FilesEnv, bounded, create_sandbox, file_sha,
                           pattern_block, stream_sha, wait_for, write_stream)
from fsmount import free_port, mount_session

BIG = 200 << 20
OLD = 1 << 20


@pytest.fixture
def fenv(tmp_path, request):
    """A mount whose quaverd listens on a fixed port, so a restarted quaverd
    is the same backend for quaverfs (no remount)."""
    env = {}

    def setup(m):
        create_sandbox(m)
        env["env"] = FilesEnv(m)

    cache = tmp_path / "staging"
    cache.mkdir(mode=0o700)
    for _ in mount_session(tmp_path / "faults", request, setup, port=free_port(),
                           fs_options=[f"cache_dir={cache}"]):
        yield env["env"]


def staging_base(fenv):
    """-o cache_dir= of the mount (fs-layout.md, the staging directory)."""
    dirs = [o.split("=", 1)[1] for o in fenv.m.fs_options if o.startswith("cache_dir=")]
    assert len(dirs) == 1, fenv.m.fs_options
    return Path(dirs[0])


def staging_dir(fenv):
    """Where quaverfs keeps staged writes (fs-layout.md "files/"):
    CACHE_DIR/<one directory per mount>/."""
    dirs = [d for d in staging_base(fenv).iterdir() if d.is_dir()]
    assert len(dirs) == 1, f"expected one cache directory of this mount: {dirs}"
    return dirs[0]


def staged_files(fenv):
    """(path, size, mode) of every staged file under the staging directory."""
    out = []
    for dirpath, _dirs, files in os.walk(staging_dir(fenv)):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out.append((p, st.st_size, st.st_mode & 0o7777))
    return out


def spool_growing(fenv, over):
    """True once quaverd holds more than @over bytes of an upload in flight
    (its spool in STATE/tmp, or a temp file beside the target)."""
    for d in (fenv.qd.state_dir / "tmp", fenv.storage / HOME.lstrip("/") / "faults"):
        try:
            with os.scandir(d) as it:
                for e in it:
                    try:
                        if e.is_file(follow_symlinks=False) and e.stat().st_size > over:
                            return True
                    except FileNotFoundError:
                        pass
        except FileNotFoundError:
            pass
    return False


def write_all(fd, seed, size):
    done = index = 0
    while done < size:
        block = pattern_block(seed, index, min(CHUNK, size - done))
        view = memoryview(block)
        while view:
            view = view[os.write(fd, view):]
        done += len(block)
        index += 1


def expect_upload_failure_logs(fenv):
    # quaverfs reports the failed upload; quaverd's restart finds its spool
    fenv.m.expect_fs_log(r"(?i)upload|flush|release|fsync|EIO|connect|refused|reset|unreachable")
    fenv.qd.expect_log(r"(?i)tmp|spool|leftover|removed|upload")


@bounded(170)
def test_quaverd_killed_mid_flush(fenv):
    expect_upload_failure_logs(fenv)
    d = fenv.home / "faults"
    os.mkdir(d)
    p = d / "big.bin"
    vp = f"{HOME}/faults/big.bin"
    old_sha = write_stream(p, "old", OLD)
    assert fenv.tb.download_sha(vp) == (200, old_sha, OLD)
    new_sha = stream_sha("new", BIG)

    # a rewrite as cp does it: O_TRUNC, which reaches the sandbox with the
    # upload at close (fs-layout.md, truncate row), not at open
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    write_all(fd, "new", BIG)
    outcome = {}

    def closer():
        try:
            os.close(fd)
            outcome["rc"] = 0
        except OSError as e:
            outcome["rc"] = e.errno

    t = threading.Thread(target=closer, daemon=True)
    t.start()
    # kill quaverd once the upload is under way, not before
    wait_for(lambda: spool_growing(fenv, 8 << 20) or "rc" in outcome, 60, interval=0.002,
             what="the upload reaching quaverd")
    assert "rc" not in outcome, "the 200 MiB upload finished before quaverd could be killed"
    fenv.qd.kill(signal.SIGKILL)
    t.join(60)
    assert not t.is_alive(), "close() did not return after quaverd died"
    assert outcome["rc"] == errno.EIO, f"close() returned errno {outcome['rc']}, expected EIO"

    # the staged copy is kept, whole, private
    staged = [s for s in staged_files(fenv) if s[1] == BIG]
    assert staged, f"no staged copy of {BIG} bytes in {staging_dir(fenv)}: {staged_files(fenv)}"
    assert any(file_sha(s[0]) == (new_sha, BIG) for s in staged)
    assert all(s[2] == 0o600 for s in staged), staged
    assert staging_dir(fenv).stat().st_mode & 0o777 == 0o700

    # quaverd back on the same port: the sandbox has the old file or the new one, whole
    fenv.qd.start()
    status, got, size = fenv.tb.download_sha(vp)
    assert status == 200
    assert (got, size) in ((old_sha, OLD), (new_sha, BIG)), \
        f"the sandbox shows a half-written file: {size} bytes"
    names = [e["name"] for e in fenv.tb.listing(f"{HOME}/faults")]
    assert names == ["big.bin"], f"leftovers in the sandbox: {names}"

    # the next fsync and close upload the kept copy
    fd = os.open(p, os.O_WRONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    assert fenv.tb.download_sha(vp) == (200, new_sha, BIG)
    assert file_sha(p) == (new_sha, BIG)
    assert os.listdir(d) == ["big.bin"]


@bounded(120)
def test_quaverd_down_at_close_then_back(fenv):
    """quaverd stopped before close: close() fails with EIO at once (no
    hang), the write is kept, and the next close after quaverd returns
    uploads it."""
    expect_upload_failure_logs(fenv)
    d = fenv.home / "down"
    os.mkdir(d)
    p = d / "f.txt"
    with open(p, "wb") as f:
        f.write(b"v1\n")
    vp = f"{HOME}/down/f.txt"
    fd = os.open(p, os.O_WRONLY)  # in place: v2 covers v1
    os.write(fd, b"v2 written while quaverd was down\n")
    fenv.qd.kill(signal.SIGKILL)
    t0 = time.monotonic()
    try:
        os.close(fd)
        rc = 0
    except OSError as e:
        rc = e.errno
    assert rc == errno.EIO
    assert time.monotonic() - t0 < 10, "close() took too long with quaverd down"
    fenv.qd.start()
    assert fenv.tb.download(vp) == b"v1\n"
    fd = os.open(p, os.O_WRONLY)
    os.close(fd)
    assert fenv.tb.download(vp) == b"v2 written while quaverd was down\n"
