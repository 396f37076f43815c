"""Terminals and runs under faults (issue 7, "Faults"), through
tests/helpers/faultproxy.py between a real quaverfs mount and quaverd:
a websocket closed mid-stream, a websocket handshake that never answers,
quaverd SIGKILLed under waiting readers of terminals and runs, Ctrl-C on a
waiting read. fs-layout.md (pty and terminals/, runs/): readers get what
was kept, then EIO, within a second, never a hang; no handshake within 10 s
is ETIMEDOUT; the mount works again by itself once the backend does.
"""

import errno
import os
import select
import signal
import subprocess
import time

import pytest

from fsmount import *  # noqa: F401,F403
from helpers.faultproxy import LOG, RETRIED, errname, fe, proxies, timed  # noqa: F401

TERM_LOG = LOG + r"|connection to the terminal was lost|terminal|websocket|could not be killed"


def read_until(fd, needle, timeout=10.0):
    """Reads @fd (select, bounded) until @needle is in what came; returns it."""
    got = b""
    deadline = time.monotonic() + timeout
    while needle not in got:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not seen in {timeout} s: {got[-300:]!r}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"EOF before {needle!r}: {got[-300:]!r}"
            got += chunk
    return got


def read_to_error(fd, timeout=5.0):
    """Reads @fd until it fails; (errno or "EOF", seconds). A reader that
    still waits after @timeout hangs."""
    t0 = time.monotonic()
    try:
        while True:
            left = t0 + timeout - time.monotonic()
            assert left > 0 and select.select([fd], [], [], left)[0], "the reader hangs"
            if not os.read(fd, 65536):
                return "EOF", time.monotonic() - t0
    except OSError as e:
        return errname(e.errno), time.monotonic() - t0


def test_websocket_closed_mid_stream(fe):
    m, P, px = fe.m, fe.m.path, fe.px
    m.expect_fs_log(TERM_LOG)
    m.sh("mkdir sandboxes/ws && mkdir sandboxes/ws/terminals/t1")
    data = os.open(P("sandboxes/ws/terminals/t1/data"), os.O_RDWR)
    pty = os.open(P("sandboxes/ws/pty"), os.O_RDWR)
    try:
        read_until(data, b"$ ")
        read_until(pty, b"$ ")
        # output streams on both when their websockets are cut
        os.write(data, b"for i in $(seq 1 200000); do echo line-$i; done\n")
        os.write(pty, b"for i in $(seq 1 200000); do echo line-$i; done\n")
        read_until(data, b"line-100")
        read_until(pty, b"line-100")
        px.close_websockets()
        t0 = time.monotonic()
        for fd, what in ((data, "terminals/t1/data"), (pty, "pty")):
            got, secs = read_to_error(fd)
            assert got == "EIO", f"{what}: {got}"
            assert time.monotonic() - t0 < 1.5, f"{what}: EIO only after {secs:.2f} s"
        assert errno_of(os.write, data, b"echo more\n") == errno.EIO
        assert m.errno_read("sandboxes/ws/terminals/t1/exit") == errno.EIO
    finally:
        os.close(data)
        os.close(pty)
    assert px.hits("ws_close") >= 2

    # a new terminal works at once, no remount
    os.mkdir(P("sandboxes/ws/terminals/t2"))
    fd = os.open(P("sandboxes/ws/terminals/t2/data"), os.O_RDWR)
    try:
        read_until(fd, b"$ ")
        os.write(fd, b"echo $((6*7))-ok\n")
        read_until(fd, b"42-ok")
        os.write(fd, b"exit 3\n")
        assert m.read("sandboxes/ws/terminals/t2/exit") == "3\n"
    finally:
        os.close(fd)


HANDSHAKE = {}


def test_websocket_cut_after_some_bytes_and_handshake_without_answer(fe):
    """A websocket that quaverd's side closes after 2000 bytes: the reader
    gets bytes, then EIO. Ctrl-C ends a waiting read of data at once. A
    handshake that never answers ends the open by 10 s (its errno: below);
    then a new terminal works."""
    m, P, px = fe.m, fe.m.path, fe.px
    m.expect_fs_log(TERM_LOG + r"|handshake|connected")
    m.sh("mkdir sandboxes/wc && mkdir sandboxes/wc/terminals/cut sandboxes/wc/terminals/mute "
         "sandboxes/wc/terminals/quiet")
    px.add("ws_close", path=r"/pty/", times=1, after_bytes=2000)
    fd = os.open(P("sandboxes/wc/terminals/cut/data"), os.O_RDWR)
    try:
        read_until(fd, b"$ ")
        os.write(fd, b"seq 1 100000\n")
        got, secs = read_to_error(fd)
        assert got == "EIO" and secs < 1.5, (got, secs)
    finally:
        os.close(fd)
    assert px.hits("ws_close") == 1

    # Ctrl-C on a read that waits (the shell prints nothing)
    quiet = subprocess.Popen(["cat", str(P("sandboxes/wc/terminals/quiet/data"))],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        assert quiet.poll() is None
        t0 = time.monotonic()
        quiet.send_signal(signal.SIGINT)
        quiet.wait(5)
        assert time.monotonic() - t0 < 1.0
    finally:
        if quiet.poll() is None:
            quiet.kill()
            quiet.wait()

    px.add("stall", path=r"/pty/")
    err, secs, _ = call(timed, os.open, P("sandboxes/wc/terminals/mute/data"), os.O_RDWR,
                        timeout=30)
    HANDSHAKE.update(err=err, secs=secs)
    assert err in (errno.ETIMEDOUT, errno.EIO) and secs <= 12, (errname(err), secs)
    px.clear()
    os.rmdir(P("sandboxes/wc/terminals/mute"))
    os.mkdir(P("sandboxes/wc/terminals/again"))
    fd = os.open(P("sandboxes/wc/terminals/again/data"), os.O_RDWR)
    try:
        read_until(fd, b"$ ")
        os.write(fd, b"echo back-$((1+1))\n")
        read_until(fd, b"back-2")
    finally:
        os.close(fd)


def test_quaverd_killed_under_waiting_readers(fe):
    """quaverd SIGKILLed behind the proxy (which answers 502 for it, as
    Daytona's does) while readers wait on a terminal's data and on a run's
    output and exit: the terminal's reader gets EIO within a second, the
    runs readers once the retries of the 502 are spent; none hangs; after the
    restart new terminals and commands work without a remount."""
    m, P, px = fe.m, fe.m.path, fe.px
    m.expect_fs_log(TERM_LOG + r"|session|command")
    m.sh("mkdir sandboxes/k && mkdir sandboxes/k/terminals/t && mkdir sandboxes/k/runs/r && "
         "echo 'echo started; sleep 60' > sandboxes/k/runs/r/command")
    data = os.open(P("sandboxes/k/terminals/t/data"), os.O_RDWR)
    readers = []
    try:
        read_until(data, b"$ ")
        os.write(data, b"sleep 60\n")
        for node in ("output", "exit"):
            readers.append(subprocess.Popen(["cat", str(P("sandboxes/k/runs/r", node))],
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        time.sleep(1.0)
        assert all(r.poll() is None for r in readers), "a reader did not wait"
        fe.qd.kill(signal.SIGKILL)
        t0 = time.monotonic()
        got, secs = read_to_error(data)
        assert got == "EIO" and secs < 1.5, (got, secs)
        # runs/ polls over HTTP: a remote backend's 502 is retried (about 2.5 s
        # per request) before the readers get EIO
        for r in readers:
            out, err = r.communicate(timeout=max(0.1, t0 + RETRIED + 2 - time.monotonic()))
            assert r.returncode != 0 and b"Input/output error" in err, (out, err)
        took = time.monotonic() - t0
        assert took < RETRIED, f"the runs readers ended after {took:.2f} s"
    finally:
        os.close(data)
        for r in readers:
            if r.poll() is None:
                r.kill()
                r.wait()

    fe.qd.start()
    deadline = time.monotonic() + 10
    while True:
        r = m.sh("mkdir sandboxes/k/runs/r2 && echo 'echo back' > sandboxes/k/runs/r2/command && "
                 "cat sandboxes/k/runs/r2/output", check=False)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        m.sh("rmdir sandboxes/k/runs/r2", check=False)
        time.sleep(0.3)
    assert r.returncode == 0 and r.stdout == "back\n", r
    os.mkdir(P("sandboxes/k/terminals/t3"))
    fd = os.open(P("sandboxes/k/terminals/t3/data"), os.O_RDWR)
    try:
        read_until(fd, b"$ ")
        os.write(fd, b"echo alive-$((2+3))\n")
        read_until(fd, b"alive-5")
    finally:
        os.close(fd)


def test_handshake_without_answer_is_etimedout():
    """fs-layout.md: no websocket handshake within 10 s is ETIMEDOUT at open
    (measured by the test above)."""
    if not HANDSHAKE:
        pytest.fail("run with test_websocket_cut_after_some_bytes_and_handshake_without_answer")
    assert HANDSHAKE["err"] == errno.ETIMEDOUT and HANDSHAKE["secs"] >= 9, HANDSHAKE
