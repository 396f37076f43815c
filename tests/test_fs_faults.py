"""quaverfs when the backend goes away or a call waits: fail fast, never
hang, recover without a remount, and let Ctrl-C through (fs-layout.md,
"Network")."""

import errno
import os
import signal
import subprocess
import tempfile
import time

from fsmount import *  # noqa: F401,F403

DOWN_CALLS = [
    "ls sandboxes",
    "cat sandboxes/alive/state",
    "cat sandboxes/alive/info.json",
    "echo stop > sandboxes/alive/state",
    "echo v > sandboxes/alive/labels/k",
    "mkdir sandboxes/new",
    "ls volumes",
]


def test_quaverd_killed_then_restarted_under_a_live_mount(make_mount):
    port = free_port()
    m = make_mount(port=port)
    qd = m.qd
    assert qd.port == port
    m.sh("mkdir sandboxes/alive && echo 'create volume v1' > control")
    m.write("control", "flush\n")
    pid = m.proc.pid

    qd.kill(signal.SIGKILL)
    time.sleep(1.1)  # past the 1 s entry and attribute caches
    for cmd in DOWN_CALLS:
        r = m.sh(cmd, check=False, timeout=30)
        assert r.returncode != 0 and "Input/output error" in r.stderr, r
        assert r.elapsed < 3.0, f"not fast: {r!r}"
    root = m.read("error")
    assert root.strip() and ": " in root, f"no reason in the root error node: {root!r}"
    t0 = time.monotonic()
    st = m.status()
    assert time.monotonic() - t0 < 3.0
    assert st["reachable"] == "no"
    m.expect_fs_log(rf"127\.0\.0\.1:{port}|refused|connect|unreachable")

    qd.start()  # same state dir, same port
    assert qd.port == port
    deadline = time.monotonic() + 3.0
    while True:
        r = m.sh("ls sandboxes", check=False, timeout=30)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.returncode == 0, f"still failing 3 s after quaverd came back: {r!r}"
    assert r.stdout == "alive\n"
    r = m.sh("cat sandboxes/alive/state && echo stop > sandboxes/alive/state && "
             "cat sandboxes/alive/state && ls volumes")
    assert r.stdout.splitlines() == ["started", "stopped", "v1"]
    assert qd.get("sandbox", "alive")["state"] == "stopped"
    assert m.status()["reachable"] == "yes"
    assert m.proc.poll() is None and m.proc.pid == pid and m.mounted, "remounted or died"


def test_ctrl_c_interrupts_a_slow_transition(make_mount):
    m = make_mount(qd_args=["--transition-delay", "5000"])
    qd = m.qd
    qd.create_sandbox("slow")
    qd.ok("POST", "/sandbox/slow/stop")
    qd.wait_state("sandbox", "slow", "stopped")
    qd.ok("POST", "/sandbox/slow/archive")
    qd.wait_state("sandbox", "slow", "archived", timeout=20)
    assert m.read("sandboxes/slow/state") == "archived\n"

    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(["bash", "-c", "echo start > sandboxes/slow/state"], cwd=m.mnt,
                             stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        time.sleep(1.0)
        assert p.poll() is None, "start of an archived sandbox returned before its restore"
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        took = time.monotonic() - t0
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    assert took <= 1.0, f"Ctrl-C took {took:.2f} s to return (stderr: {stderr!r})"
    assert p.returncode != 0
    m.expect_fs_log(r"(?i)interrupt|EINTR|cancel")
    # the mount goes on working; the backend finishes the restore on its own
    assert m.read("sandboxes/slow/state") in ("restoring\n", "started\n")


def test_op_timeout_gives_etimedout(make_mount):
    """A state change that outlasts -o op_timeout fails with ETIMEDOUT; the
    backend finishes it on its own."""
    m = make_mount(qd_args=["--transition-delay", "4000"], fs_options=["op_timeout=1"])
    m.sh("mkdir sandboxes/patient && echo stop > sandboxes/patient/state")
    t0 = time.monotonic()
    got = errno_of(write_node, m.path("sandboxes/patient/state"), "archive\n", timeout=30)
    took = time.monotonic() - t0
    assert got == errno.ETIMEDOUT, errno.errorcode.get(got, got)
    assert 0.9 <= took < 3.0, f"op_timeout=1 gave up after {took:.2f} s"
    m.expect_fs_log(r"patient")
    assert m.read("sandboxes/patient/error").strip(), "no reason in the error node"
    m.qd.wait_state("sandbox", "patient", "archived", timeout=10)


def test_embedded_mount_follows_quaverd_restarted_on_another_port(make_mount):
    """doc/mounting.md: quaverd restarted while mounted, even on another
    port: EIO while it is down, then it works again without a remount."""
    m = make_mount(mode="embedded")
    m.sh("mkdir sandboxes/kept")
    for pid in m.embedded_pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while m.qd.lock_holders() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.1)
    r = m.sh("ls sandboxes", check=False, timeout=30)
    assert r.returncode != 0 and "Input/output error" in r.stderr, r
    assert r.elapsed < 3.0, r
    m.expect_fs_log(r"refused|connect|unreachable|127\.0\.0\.1")

    again = Backend(m.base / "again", state_dir=m.state_dir)
    again.start()
    m.qd = again  # ours now: finish() stops it and checks its log
    deadline = time.monotonic() + 5
    while True:
        r = m.sh("ls sandboxes", check=False, timeout=30)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.returncode == 0 and r.stdout == "kept\n", r
    assert m.status()["backend"] == again.url
    assert m.read("sandboxes/kept/state") == "started\n"
