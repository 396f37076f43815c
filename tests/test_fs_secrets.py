"""The key (quaverd's token) appears nowhere a user or another process can
see it: ps -ef, /proc/self/mountinfo, quaverfs's log, any file of the mount
(fs-layout.md, "Mounting")."""

import os

import pytest

from fsmount import *  # noqa: F401,F403


def exercise(m):
    """Enough traffic that every kind of request reaches the log."""
    m.sh("mkdir sandboxes/sec && echo 'create volume secvol' > control && "
         "echo 'create sandbox sec2 env=PASSWORD=hunter2 label=a=b volume=secvol:/v' > control "
         "&& echo stop > sandboxes/sec/state && echo start > sandboxes/sec/state && "
         "echo v > sandboxes/sec/labels/k && rm sandboxes/sec/labels/k && "
         "echo 20 > sandboxes/sec/autostop && echo secsnap > sandboxes/sec/snapshot && "
         "cat sandboxes/sec/ports/8080 status && ls -lR . > /dev/null")
    m.errno_write("sandboxes/sec/state", "sideways\n")  # a failure: its message is logged
    m.expect_fs_log(r"sideways|sec/state")


def every_file(m):
    """{relative path: content} of every file of the mount, ports included."""
    def walk():
        out = {}
        for dirpath, dirnames, filenames in os.walk(m.mnt):
            names = list(filenames)
            if os.path.basename(dirpath) == "ports":
                names += ["1", "3000", "8080", "65535"]  # not listed, but readable
            for n in names:
                p = os.path.join(dirpath, n)
                with open(p, "rb") as f:
                    out[os.path.relpath(p, m.mnt)] = f.read().decode(errors="replace")
        return out
    return call(walk)


def assert_key_hidden(m, key):
    pieces = [key, key[:16], key[-16:]]

    ps = run(["ps", "-efww"], check=True).stdout
    assert str(m.proc.pid) in ps
    for p in pieces:
        assert p not in ps, "the key is in ps -ef"
    for pid in [m.proc.pid, *m.embedded_pids]:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert key.encode() not in f.read()

    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    line = mountinfo_entry(m.mnt)
    assert line is not None
    source = line.split(" - ", 1)[1].split()[1]
    assert source == f"quaverfs#{m.qd.url}", line
    for p in pieces:
        assert p not in mountinfo, "the key is in /proc/self/mountinfo"

    files = every_file(m)
    assert len(files) > 30
    leaks = [path for path, text in files.items() if any(p in text for p in pieces)]
    assert not leaks, f"the key is in {leaks}"

    log = m.log_text()
    assert log.strip(), "quaverfs logged nothing"
    for p in pieces:
        assert p not in log, "the key is in quaverfs's log"


def test_key_hidden_with_env_key_and_debug_log(make_mount):
    m = make_mount(debug=True)
    exercise(m)
    assert "GET" in m.log_text() or "sandbox" in m.log_text()  # -d logs requests
    assert_key_hidden(m, m.qd.token)


def test_key_hidden_with_key_file(make_mount):
    m = make_mount(mode="key_file", debug=True)
    exercise(m)
    assert_key_hidden(m, m.qd.token)


def test_key_hidden_in_embedded_mode(make_mount):
    m = make_mount(mode="embedded", debug=True)
    exercise(m)
    assert_key_hidden(m, m.qd.token)
