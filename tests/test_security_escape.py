"""Escape attempts from inside sandboxes (issue 7, "Security"), run as a
sandbox's own processes through quaverd's process API: /proc tricks
(/proc/1/root, mountinfo, every environ), ptrace of anything outside,
symbolic and hard links made inside and then used through the toolbox
API and through a quaverfs mount, volume subpaths swapped for links.
A canary file on the host (world-readable, so only the sandbox's walls
keep it) and quaverd's token must never come back.

test_runtime_isolation.py has the plain reads of host paths and of another
sandbox; test_toolbox_escape.py and test_files_escape.py have links planted
from the host side. These are the same attacks made from inside."""

import os
import secrets
import shlex
import urllib.parse
import uuid

import pytest

from fsmount import *  # noqa: F401,F403
from helpers.daytona import create_volume, wait_sandbox
from test_runtime_process import Box, host_pids_with_arg, new_box, wait_until


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    """A world-readable file on the host outside every state dir."""
    d = tmp_path_factory.mktemp("host-secret")
    os.chmod(d, 0o755)
    value = "canary-" + secrets.token_hex(16)
    p = d / "canary.txt"
    p.write_text(value + "\n")
    os.chmod(p, 0o644)
    return p, value


@pytest.fixture(scope="module")
def sec(make_module_quaverd):
    q = make_module_quaverd(name="sec")
    q.box = new_box(q)
    return q


class AnyBox(Box):
    """A Box whose toolbox may listen on a port of its own (cloud-like mode)."""

    def __init__(self, q, dto):
        super().__init__(q, dto)
        self.port = urllib.parse.urlsplit(dto["toolboxProxyUrl"]).port

    def call(self, method, route, json=None, headers=None, timeout=120, **kw):
        return self.q.request_path(method, f"{self.base}/{route}", json=json, headers=headers,
                                   timeout=timeout, port=self.port, **kw)


def assert_clean(q, text, canary_value, where):
    assert canary_value not in text, f"the host canary came back through {where}"
    assert q.token not in text, f"quaverd's token came back through {where}"


# ---- /proc -----------------------------------------------------------------------

def test_proc_roots_are_the_sandbox(sec, canary):
    q, (cpath, cvalue) = sec, canary
    box = q.box
    out = box.out("ls -a / | sort; echo ==; ls -a /proc/self/root/ | sort; echo ==; "
                  "ls -a /proc/self/root/../.. | sort; echo ==; ls -a /proc/1/root/ 2>&1; true")
    own, self_root, above, init_root = out.split("==\n")
    assert own == self_root == above
    # the init (not dumpable) keeps even its root to itself; if shown, it is ours
    assert "Permission denied" in init_root or sorted(init_root.split()) == sorted(own.split())
    for via in (f"/proc/1/root{cpath}", f"/proc/self/root{cpath}",
                f"/proc/1/root/../../../../..{cpath}", f"/proc/1/cwd/../../../..{cpath}"):
        code, out = box.run(f"cat {shlex.quote(via)}")
        assert code != 0, via
        assert_clean(q, out, cvalue, via)


def test_mountinfo_shows_no_secret(sec, canary):
    q, (_, cvalue) = sec, canary
    out = q.box.out("cat /proc/self/mountinfo /proc/1/mountinfo /proc/mounts 2>/dev/null; true")
    assert out.strip()
    assert_clean(q, out, cvalue, "mountinfo")


def test_every_readable_environ_and_cmdline(sec, canary):
    """No process a sandbox can see carries the token or the API key in its
    argv or environment, and quaverd is not among them."""
    q, (_, cvalue) = sec, canary
    box = q.box
    out = box.out("for p in /proc/[0-9]*; do cat $p/cmdline $p/environ 2>/dev/null; "
                  "echo; cat $p/comm 2>/dev/null; done | tr '\\0' '\\n'; env")
    assert_clean(q, out, cvalue, "/proc/*/environ")
    assert "DAYTONA_API_KEY" not in out and "DAYTONA_JWT" not in out
    assert "quaverd\n" not in out.replace("quaverd-init\n", "")
    # quaverd's own pid (as the host numbers it) is no process of the sandbox
    code, out = box.run(f"cat /proc/{q.proc.pid}/environ /proc/{q.proc.pid}/cmdline")
    assert q.token not in out and str(q.state_dir) not in out


def test_ptrace_of_anything_outside_fails(sec):
    """PTRACE_ATTACH to the sandbox's init and to quaverd's host pid, and
    writes to their memory, all fail; quaverd stays untraced."""
    q = sec
    script = (
        "import ctypes, os, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "res = []\n"
        f"for pid in (1, {q.proc.pid}, {os.getpid()}):\n"
        "    r = libc.ptrace(16, pid, None, None)\n"  # PTRACE_ATTACH
        "    res.append((pid, r, ctypes.get_errno()))\n"
        "    try:\n"
        "        open(f'/proc/{pid}/mem', 'rb').read(1)\n"
        "        res.append((pid, 'mem', 'read'))\n"
        "    except OSError as e:\n"
        "        pass\n"
        "print(res)\n")
    code, out = q.box.run(f"python3 -c {shlex.quote(script)}")
    assert code == 0, out
    results = eval(out.strip().splitlines()[-1])  # noqa: S307 (our own script's repr)
    assert all(r[1] == -1 for r in results if r[1] != "mem"), results
    assert not [r for r in results if r[1] == "mem"], results
    with open(f"/proc/{q.proc.pid}/status") as f:
        tracer = [ln for ln in f if ln.startswith("TracerPid:")][0]
    assert tracer.split()[1] == "0", tracer


def test_signals_do_not_reach_outside(sec):
    q = sec
    other = new_box(q)
    tag = f"{4000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"
    other.out(f"setsid sleep {tag} >/dev/null 2>&1 < /dev/null & true")
    pids = wait_until("the other's sleeper", lambda: host_pids_with_arg(tag), timeout=5)
    victim = pids[0]
    for target in (victim, q.proc.pid):
        out = q.box.out(f"kill -9 {target} 2>&1; echo rc=$?")
        assert "rc=0" not in out, out
    q.box.out("kill -9 1 2>/dev/null; kill -STOP 1 2>/dev/null; true")  # init ignores them
    assert host_pids_with_arg(tag) == pids, "a signal reached the other sandbox"
    assert q.proc.poll() is None
    assert q.box.out("echo alive") == "alive\n"
    other.stop()


# ---- links made inside -------------------------------------------------------------

def plant_links(box, cpath, q):
    token_path = q.state_dir / "token"
    rel = "../" * 30 + str(cpath).lstrip("/")
    links = {
        "abs": str(cpath), "rel": rel, "proc1": f"/proc/1/root{cpath}",
        "procself": f"/proc/self/root/{rel}", "token": str(token_path),
        "tokenrel": "../" * 30 + str(token_path).lstrip("/"), "dotdot": "../../../../../..",
        "procroot": "/proc/1/root", "fd": "/proc/self/fd/0",
    }
    script = "cd /home/daytona && mkdir -p esc && cd esc && " + " && ".join(
        f"ln -sfn {shlex.quote(t)} {n}" for n, t in links.items())
    # hard links to what the sandbox cannot see, and to root-owned files it can
    script += (f"; ln {shlex.quote(str(cpath))} hard1 2>/dev/null; "
               "ln /etc/passwd hard2 2>/dev/null; ln /usr/bin/env hard3 2>/dev/null; true")
    box.out(script)
    return list(links) + ["hard1", "hard2", "hard3"]


def test_links_made_inside_never_lead_the_toolbox_out(sec, canary):
    q, (cpath, cvalue) = sec, canary
    box = q.box
    names = plant_links(box, cpath, q)
    base = f"{box.base}/files"
    for n in names:
        p = f"/home/daytona/esc/{n}"
        for route, params in (("download", {"path": p}), ("info", {"path": p}),
                              ("", {"path": p}), ("", {"path": p, "depth": "3"}),
                              ("find", {"path": p, "pattern": cvalue[:12]}),
                              ("search", {"path": p, "pattern": "canary*"})):
            if route in ("find", "search") and n in ("dotdot", "procroot"):
                continue  # the sandbox's own / (its /usr is large): a legal, slow walk
            url = f"{base}/{route}".rstrip("/") + "?" + urllib.parse.urlencode(params)
            r = q.request_path("GET", url)
            assert r.status < 500, (n, route, r)
            assert_clean(q, r.raw.decode(errors="replace") if isinstance(r.raw, bytes)
                         else str(r.data), cvalue, f"{route} of {n}")
        r = q.request_path("POST", f"{base}/bulk-download", json={"paths": [p]})
        assert_clean(q, r.raw.decode(errors="replace"), cvalue, f"bulk-download of {n}")
        # writes through the link stay inside (or fail)
        q.request_path("POST", f"{base}/upload-v2?" + urllib.parse.urlencode({"path": p}),
                       body=b"overwritten", headers={"Content-Type": "application/octet-stream"})
        q.request_path("POST", f"{base}/permissions?" + urllib.parse.urlencode(
            {"path": p, "mode": "0777"}))
        q.request_path("POST", f"{base}/replace", json={"files": [p], "pattern": "canary",
                                                        "newValue": "owned"})
    assert cpath.read_text() == cvalue + "\n"
    assert oct(cpath.stat().st_mode & 0o777) == oct(0o644)
    assert (q.state_dir / "token").read_text().strip() == q.token
    # and the process side sees nothing new either
    code, out = box.run(f"cat /home/daytona/esc/* 2>/dev/null; cat {shlex.quote(str(cpath))}")
    assert_clean(q, out, cvalue, "cat of the links inside")


def test_links_made_inside_never_lead_the_mount_out(make_mount, canary, tmp_path):
    """The same links, seen through quaverfs's files/: reads, listings and
    writes stay in the sandbox."""
    cpath, cvalue = canary
    # writes that cannot be sent stay staged: in a cache dir of this test's own
    m = make_mount(fs_options=[f"cache_dir={tmp_path / 'cache'}"])
    q = m.qd
    box = AnyBox(q, q.ok("POST", "/sandbox", json={"name": "escbox", "env": {}, "labels": {}}))
    wait_sandbox(q, box.id, "started")
    names = plant_links(box, cpath, q)
    m.write("control", "flush\n")
    esc = m.path("sandboxes", "escbox", "files", "home", "daytona", "esc")

    def sweep():
        seen = []
        for n in names:
            p = os.path.join(esc, n)
            for op in (lambda: open(p, "rb").read(), lambda: os.listdir(p),
                       lambda: str(os.stat(p)), lambda: os.readlink(p)):
                try:
                    seen.append(str(op()))
                except OSError:
                    pass
            try:
                with open(p, "wb") as f:
                    f.write(b"through the mount")
            except OSError:
                pass
        return "\n".join(seen)
    text = call(sweep, timeout=120)
    assert_clean(q, text, cvalue, "quaverfs files/")
    assert cpath.read_text() == cvalue + "\n"
    m.expect_fs_log(r"esc|escbox|files/|could not be uploaded")
    q.expect_log(r".")


def test_volume_subpath_swapped_for_a_link_inside(sec, canary):
    """A sandbox with the whole volume turns a subpath into links out; a
    sandbox mounting that subpath does not start into the host."""
    q, (cpath, cvalue) = sec, canary
    vol = create_volume(q, name="secvol-" + uuid.uuid4().hex[:8])
    whole = new_box(q, volumes=[{"volumeId": vol["id"], "mountPath": "/mnt/v"}])
    whole.out("mkdir -p /mnt/v/s1 /mnt/v/s2 && rmdir /mnt/v/s1 /mnt/v/s2 && "
              "ln -s ../../../../../../../.. /mnt/v/s1 && "
              f"ln -s {shlex.quote(str(cpath.parent))} /mnt/v/s2")
    q.expect_log(r"volume|subpath|Not a directory|its processes cannot start|not available")
    for sub in ("s1", "s2"):
        dto = q.request("POST", "/sandbox", json={
            "name": f"sub-{sub}-{uuid.uuid4().hex[:6]}", "env": {}, "labels": {},
            "volumes": [{"volumeId": vol["id"], "mountPath": "/mnt/x", "subpath": sub}]})
        if dto.status != 200:
            continue  # refused at once: fine
        state = wait_sandbox(q, dto.data["id"], ("started", "error"), allow_error=True)["state"]
        if state == "started":
            r = Box(q, dto.data).execute(f"ls -la /mnt/x/ 2>&1; cat /mnt/x/canary.txt 2>&1; "
                                         f"cat /mnt/x{cpath} 2>&1")
            text = str(r.data)
            assert_clean(q, text, cvalue, f"volume subpath {sub}")
    whole.stop()
