"""valgrind memcheck on a lifecycle run (issue 7, "Sanitizers"): quaverd and
quaverfs, both under memcheck, through mount, mkdir of a sandbox, a label,
stop and start, a file written and read in files/, rmdir, unmount and
SIGTERM. No invalid access, no use of uninitialised memory, no definite
leak (valgrind's exit code 99 and its error summary say so).

valgrind cannot run a sanitizer build: the binaries are
$VALGRIND_QUAVERD_BIN / $VALGRIND_QUAVERFS_BIN, else the ones the suite
uses when they are plain builds, else build/ (tools/test's release build)."""

import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from fsmount import *  # noqa: F401,F403
from fsmount import REPO

VALGRIND = shutil.which("valgrind")


def plain_build(path):
    """False for a binary built with ASan/UBSan/TSan (valgrind cannot run it)."""
    with open(path, "rb") as f:
        data = f.read()
    return not any(s in data for s in (b"__asan_init", b"__tsan_init", b"__ubsan_handle"))


def pick(env, current, default):
    if os.environ.get(env):
        return os.environ[env]
    if os.access(current, os.X_OK) and plain_build(current):
        return current
    return str(default)


def wrapper(tmp, name, binary, log):
    """A script that runs @binary under memcheck with the arguments it gets."""
    p = tmp / f"vg-{name}"
    p.write_text("#!/bin/sh\n"
                 f"exec {VALGRIND} --tool=memcheck --error-exitcode=99 --leak-check=full "
                 "--errors-for-leak-kinds=definite --show-leak-kinds=definite "
                 "--track-fds=no --child-silent-after-fork=yes "
                 f"--log-file={log} {binary} \"$@\"\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


def summary(log):
    text = log.read_text(errors="replace") if log.exists() else ""
    m = re.findall(r"ERROR SUMMARY: (\d+) errors", text)
    return text, [int(x) for x in m]


@pytest.mark.skipif(VALGRIND is None, reason="valgrind missing (tools/install-deps installs it)")
def test_lifecycle_is_memcheck_clean(tmp_path, monkeypatch):
    qd_bin = pick("VALGRIND_QUAVERD_BIN", quaverd_bin(), REPO / "build/src/quaverd/quaverd")
    fs_bin = pick("VALGRIND_QUAVERFS_BIN", quaverfs_bin(), REPO / "build/src/fs/quaverfs")
    for b in (qd_bin, fs_bin):
        assert os.access(b, os.X_OK) and plain_build(b), f"{b}: no plain build to run"
    qd_log, fs_log = tmp_path / "quaverd.vg", tmp_path / "quaverfs.vg"
    monkeypatch.setenv("QUAVERD_BIN", str(wrapper(tmp_path, "quaverd", qd_bin, qd_log)))
    monkeypatch.setenv("QUAVERFS_BIN", str(wrapper(tmp_path, "quaverfs", fs_bin, fs_log)))
    import fsmount
    old_timeout = fsmount.MOUNT_TIMEOUT
    fsmount.MOUNT_TIMEOUT = 60
    m = Mount(tmp_path / "m", fs_options=[f"cache_dir={tmp_path / 'cache'}"])
    try:
        m.start()
        # valgrind 3.19 has no pidfd_open: the sandbox's processes cannot start
        # under it (its tree, state changes and files/ work without them)
        m.qd.expect_log(r"pidfd_open: Function not implemented")
        m.sh("mkdir sandboxes/vg && echo v > sandboxes/vg/labels/k && cat sandboxes/vg/labels/k "
             "&& echo stop > sandboxes/vg/state && echo start > sandboxes/vg/state && "
             "echo hello > sandboxes/vg/files/tmp/x && cat sandboxes/vg/files/tmp/x && "
             "ls -l sandboxes/vg sandboxes/vg/files/tmp > /dev/null && cat sandboxes/vg/info.json "
             "status > /dev/null && rmdir sandboxes/vg", timeout=240)
    finally:
        problems = m.finish()
        fsmount.MOUNT_TIMEOUT = old_timeout
    for name, log in (("quaverd", qd_log), ("quaverfs", fs_log)):
        text, counts = summary(log)
        assert counts, f"{name}: no valgrind summary:\n{text[-3000:]}"
        assert counts[-1] == 0, f"{name}: memcheck errors:\n{text[-6000:]}"
    assert not problems, problems
