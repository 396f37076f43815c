"""quaverfs killed (issue 7, "Faults": quaverfs crash; fs-layout.md "files/",
The staging and cache directory): after a SIGKILL of the daemon the mount
point is cleaned with `fusermount3 -u` and mounted again; the writes it held
and never uploaded are reported in the log of the next start and kept in the
cache directory; what close() had acknowledged is in the sandbox; the
sandbox never shows the unsent writes half-done.
"""

import errno
import os
import signal
import subprocess

import pytest

from files_helpers import HOME, FilesEnv, bounded, create_sandbox, wait_for
from fsmount import MOUNT_TIMEOUT, mount_session, mountinfo_entry, run

UNSENT = b"written through files/, never closed: quaverfs dies first\n" * 100


def start_again(m):
    """A new quaverfs on the same mountpoint and cache directory (same quaverd)."""
    log = open(m.log_file, "ab")
    try:
        m.proc = subprocess.Popen(m.command(), stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=log, env=m.environment())
    finally:
        log.close()
    wait_for(lambda: mountinfo_entry(m.mnt) is not None, MOUNT_TIMEOUT,
             what="the mount to come back")


@pytest.fixture
def crash_env(tmp_path, request):
    """A mount with its own cache directory (-o cache_dir=), torn down and
    log-checked by fsmount.mount_session even when the test fails."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    env = {}

    def setup(m):
        create_sandbox(m)
        env["env"] = FilesEnv(m)

    for m in mount_session(tmp_path / "crash", request, setup,
                           fs_options=[f"cache_dir={cache}"]):
        m.expect_fs_log(r"held writes it never sent to sandbox")
        m.expect_fs_log(r"keeps 1 such file")
        yield m, env["env"], cache


@bounded(60)
def test_killed_quaverfs_reports_unsent_writes(crash_env):
    m, fenv, cache = crash_env
    d = fenv.home / "crash"
    os.mkdir(d)
    acked = d / "acked.txt"
    acked.write_bytes(b"closed before the crash\n")
    (d / "victim.txt").write_bytes(b"old content\n")

    # open for writing, write, and never close: the bytes are only staged
    fd = os.open(d / "victim.txt", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, UNSENT)
    staged = [p for p in cache.rglob("f*") if p.is_file()]
    assert any(p.read_bytes() == UNSENT for p in staged), "the write is not staged"

    m.proc.send_signal(signal.SIGKILL)
    m.proc.wait(10)
    try:
        os.close(fd)
    except OSError as e:  # the daemon is gone: ENOTCONN
        assert e.errno in (errno.ENOTCONN, errno.EIO), e
    # a dead mount answers ENOTCONN; fusermount3 -u cleans it
    try:
        os.stat(d / "never-looked-up")
        raise AssertionError("a lookup in the dead mount succeeded")
    except OSError as e:
        assert e.errno == errno.ENOTCONN, e
    r = run(["fusermount3", "-u", str(m.mnt)], timeout=10)
    assert r.returncode == 0, r.stderr
    assert mountinfo_entry(m.mnt) is None

    mark = m.log_mark()
    start_again(m)
    log = m.log_since(mark)
    vpath = f"{HOME}/crash/victim.txt"
    lines = [ln for ln in log.splitlines() if "never sent" in ln]
    assert len(lines) == 1, log
    assert f"sandbox {fenv.sandbox_id} path {vpath}" in lines[0], lines[0]
    kept = lines[0].rsplit(" kept in ", 1)[1].strip()
    assert open(kept, "rb").read() == UNSENT
    assert os.stat(kept).st_mode & 0o777 == 0o600

    # the dead mount's clean cached copies (acked.txt's) were removed; only this stays
    others = [p for p in cache.rglob("f*")
              if p.is_file() and str(p) != kept and not p.name.endswith(".origin")]
    assert others == [], others

    # the sandbox: what close() acknowledged, and the old content of the other
    assert acked.read_bytes() == b"closed before the crash\n"
    assert fenv.tb.download(vpath) == b"old content\n"
    assert (d / "victim.txt").read_bytes() == b"old content\n"
    # the new mount works
    (d / "after.txt").write_bytes(b"after\n")
    assert fenv.tb.download(f"{HOME}/crash/after.txt") == b"after\n"
