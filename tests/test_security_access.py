"""Access (issue 7, "Security"): a mount has default_permissions and no
allow_other unless asked, so another local user (a uid no account has)
cannot look in; quaverd listens on 127.0.0.1 only unless --listen says
otherwise, and answers nothing without its token, whoever connects."""

import os
import socket

import pytest

from fsmount import *  # noqa: F401,F403

STRANGER = (54321, 54321)  # no account has it (checked below)


def as_stranger(*cmd):
    return run(["setpriv", f"--reuid={STRANGER[0]}", f"--regid={STRANGER[1]}",
                "--clear-groups", "--", *cmd], timeout=20)


def test_stranger_uid_is_unused():
    import pwd
    with pytest.raises(KeyError):
        pwd.getpwuid(STRANGER[0])


def test_mount_options(mount):
    entry = mountinfo_entry(mount.mnt)
    text = " ".join(map(str, entry)) if not isinstance(entry, str) else entry
    assert "default_permissions" in text, text
    assert "allow_other" not in text, text


def test_another_user_cannot_enter_the_mount(mount):
    m = mount
    m.sh("mkdir sandboxes/mine")
    os.chmod(m.base, 0o755)
    for cmd in (["ls", str(m.mnt)], ["cat", str(m.path("status"))],
                ["cat", str(m.path("sandboxes/mine/state"))],
                ["sh", "-c", f"echo stop > {m.path('sandboxes/mine/state')}"],
                ["mkdir", str(m.path("sandboxes/theirs"))],
                ["ls", str(m.path("sandboxes/mine/files/etc"))]):
        r = as_stranger(*cmd)
        assert r.returncode != 0, (cmd, r)
        assert "Permission denied" in r.stderr, (cmd, r.stderr)
    assert m.read("sandboxes/mine/state") == "started\n"
    assert "theirs" not in m.listdir("sandboxes")


def listening_addresses(pid):
    """(address, port) of every TCP socket @pid listens on, from /proc/net/tcp{,6}."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                local, state, inode = cols[1], cols[3], cols[9]
                if state == "0A" and inode in inodes:
                    addr, port = local.split(":")
                    out.append((addr, int(port, 16)))
    return out


def test_quaverd_listens_on_loopback_only(quaverd):
    addrs = listening_addresses(quaverd.proc.pid)
    assert addrs, "quaverd listens on nothing"
    for addr, port in addrs:
        assert addr in ("0100007F", "00000000000000000000000001000000"), (addr, port)
    # from another address of this machine: refused
    for ip in run(["hostname", "-I"], timeout=5).stdout.split():
        if ":" in ip or ip.startswith("127."):
            continue
        with pytest.raises(OSError):
            socket.create_connection((ip, quaverd.port), timeout=3).close()


def test_embedded_quaverd_listens_on_loopback_only(make_mount):
    m = make_mount(mode="embedded")
    pids = m.qd.lock_holders()
    assert pids
    for pid in pids:
        for addr, port in listening_addresses(pid):
            assert addr in ("0100007F", "00000000000000000000000001000000"), (addr, port)


def test_listen_elsewhere_still_needs_the_token(make_quaverd):
    """--listen 0.0.0.0 opens it to the network (doc/quaverd.md): the token
    is then all that guards it, on every route."""
    q = make_quaverd("--listen", "0.0.0.0")
    q.expect_log(r"0\.0\.0\.0|listen")
    ip = next((a for a in run(["hostname", "-I"], timeout=5).stdout.split()
               if ":" not in a and not a.startswith("127.")), "127.0.0.1")
    for path in (b"/api/sandbox", b"/api/volumes", b"/toolbox/x/toolbox/files?path=/",
                 b"/api/socket.io/?EIO=4&transport=websocket"):
        with socket.create_connection((ip, q.port), timeout=5) as s:
            s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        assert data.startswith(b"HTTP/1.1 401"), (path, data[:200])
