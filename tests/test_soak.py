"""A soak (issue 7, "Load"): 8 shells work the mount at once for N iterations
while another loop lists everything, over one real quaverfs and quaverd.

Each shell, each iteration: makes a sandbox, labels it, writes files in its
files/ and reads them back, runs a command through runs/ and reads its output
and exit, runs a terminal (terminals/T: data, exit), stops and starts the sandbox, removes its sandbox of the iteration
before; it also rewrites a file and flips the state of a sandbox of its own
that lives through the whole run. At the end: every file has the content
last written (through the mount and on quaverd's disk), every sandbox is in
the state last asked, and once the soak's sandboxes are gone, quaverfs and
quaverd have the file descriptors (but for kept-alive connections, at most
the client's idle pool), threads and child processes they had after the
warm-up round, and their memory (RSS) is within RSS_BOUND_KIB of it.

CI runs SOAK_ITERATIONS (bounded to stay under 120 s on 2 cores);
QUAVERFS_SOAK_ITERATIONS=N runs longer.
"""

import os
import re
import select
import threading
import time

import pytest

from fsmount import *  # noqa: F401,F403

SHELLS = 8
ITERATIONS = int(os.environ.get("QUAVERFS_SOAK_ITERATIONS") or 10)
# memory back within 24 MiB of its start (ASan's quarantine, 32 MiB in
# tools/test, holds freed memory on top of that)
RSS_BOUND_KIB = (24 + (40 if os.environ.get("QUAVER_SANITIZED") else 0)) * 1024
FD_SLACK = 4  # other descriptors that may come and go
POOL_IDLE = 16  # src/daytona/client.c DT_POOL_MAX_IDLE: idle kept-alive connections
THREAD_SLACK = 4  # FUSE worker threads idle in the pool
SHELL_TIMEOUT = 120.0


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def children(pid):
    kids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                # pid (comm) state ppid ...: comm may hold spaces
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.append(int(p))
    return kids


def fd_targets(pid):
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


def measure(pid):
    st = proc_status(pid)
    return {
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(st["Threads"]),
        "children": len(children(pid)),
        "rss_kib": int(st["VmRSS"].split()[0]),
    }


def settle_measure(pid, want, timeout=10.0):
    """Measures @pid until its threads and children are back within the
    slacks of @want (threads idle away, children are reaped, on their own),
    or @timeout passes; returns the last measure."""
    deadline = time.monotonic() + timeout
    while True:
        now = measure(pid)
        if (now["threads"] <= want["threads"] + THREAD_SLACK and
                now["children"] <= want["children"]) or time.monotonic() > deadline:
            return now
        time.sleep(0.25)


class Shell:
    """One of the 8 shells: its commands, what it asked last, what went wrong."""

    def __init__(self, m, index):
        self.m = m
        self.i = index
        self.home = f"w{index}"  # the sandbox that lives through the run
        self.files = {}  # mount path -> content last written
        self.states = {}  # sandbox -> state last asked
        self.gone = set()  # sandboxes removed
        self.errors = []
        self.iterations = 0

    def sh(self, script):
        r = self.m.sh(script, timeout=SHELL_TIMEOUT, check=False)
        if r.returncode != 0:
            raise AssertionError(f"shell {self.i}: {script!r} failed: {r.stderr.strip()!r}")
        return r.stdout

    def write(self, path, text):
        self.sh(f"printf '%s' '{text}' > {path}")
        self.files[path] = text
        got = self.sh(f"cat {path}")
        if got != text:
            raise AssertionError(f"shell {self.i}: {path} reads {got!r} after writing {text!r}")

    def start(self):
        sb = f"sandboxes/{self.home}"
        self.sh(f"mkdir {sb} && mkdir {sb}/files/tmp/soak")
        self.states[self.home] = "started"

    def iteration(self, it):
        i, sb = self.i, f"sandboxes/w{self.i}x{it}"
        self.sh(f"mkdir {sb} && echo v{it} > {sb}/labels/iter && mkdir {sb}/files/tmp/soak")
        self.states[f"w{i}x{it}"] = "started"
        for k in range(3):
            self.write(f"{sb}/files/tmp/soak/f{k}", f"content-{i}-{it}-{k}-" + "x" * (k * 4000))
        out = self.sh(f"mkdir {sb}/runs/r && "
                      f"echo 'echo run-{i}-{it}; ls /tmp/soak | wc -l' > {sb}/runs/r/command && "
                      f"cat {sb}/runs/r/exit {sb}/runs/r/output")
        if out != f"0\nrun-{i}-{it}\n3\n":
            raise AssertionError(f"shell {i}: the run said {out!r}")
        self.terminal(sb, f"term-{i}-{it}")
        self.sh(f"echo stop > {sb}/state && test \"$(cat {sb}/state)\" = stopped && "
                f"echo start > {sb}/state && test \"$(cat {sb}/state)\" = started")
        if it > 0:
            self.sh(f"rmdir sandboxes/w{i}x{it - 1}")
            self.gone.add(f"w{i}x{it - 1}")
            self.states.pop(f"w{i}x{it - 1}", None)
            self.files = {p: c for p, c in self.files.items()
                          if not p.startswith(f"sandboxes/w{i}x{it - 1}/")}
        # the long-lived sandbox: a file rewritten, a state flipped
        home = f"sandboxes/{self.home}"
        if self.states[self.home] != "started":
            self.sh(f"echo start > {home}/state")
            self.states[self.home] = "started"
        self.write(f"{home}/files/tmp/soak/last", f"last-{i}-{it}")
        if (i + it) % 2:
            self.sh(f"echo stop > {home}/state")
            self.states[self.home] = "stopped"
        self.iterations += 1

    def terminal(self, sb, word):
        """A terminal: its shell echoes @word and exits 7; data gives the
        output then EOF, exit the code."""
        tdir = self.m.path(sb, "terminals", "t")
        os.mkdir(tdir)
        fd = os.open(tdir / "data", os.O_RDWR)
        try:
            os.write(fd, f"echo {word}-$((3+4)); exit 7\n".encode())
            out, deadline = b"", time.monotonic() + 30
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise AssertionError(f"shell {self.i}: the terminal hangs: {out[-200:]!r}")
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                out += chunk
        finally:
            os.close(fd)
        if f"{word}-7".encode() not in out:
            raise AssertionError(f"shell {self.i}: the terminal said {out[-300:]!r}")
        code = (tdir / "exit").read_text()
        if code != "7\n":
            raise AssertionError(f"shell {self.i}: the terminal's exit says {code!r}")
        os.rmdir(tdir)

    def run(self, first, count):
        try:
            if self.home not in self.states:
                self.start()
            for it in range(first, first + count):
                self.iteration(it)
        except Exception as e:  # reported by the test
            self.errors.append(repr(e))


# Defects of runs/ (src/fs/runs*.c) the soak found, since fixed; the test
# test_soak_known_runs_defects below checks that they stay away.
KNOWN_LISTER = re.compile(r"cannot open directory '\S+/runs': File exists")
KNOWN = {"lister": [], "spools": []}


def lister(m, stop, counts, errors):
    script = ("ls sandboxes >/dev/null; for s in sandboxes/*; do cat $s/state $s/id >/dev/null; "
              "ls $s/labels $s/runs $s/terminals >/dev/null; done; ls sandboxes/*/files/tmp/soak >/dev/null; "
              "ls volumes snapshots >/dev/null; cat status >/dev/null")
    while not stop.is_set():
        r = m.sh(script, timeout=SHELL_TIMEOUT, check=False)
        counts[0] += 1
        for line in r.stderr.splitlines():
            # names come and go under it: only ENOENT (and files/ of a stopped
            # sandbox: EHOSTDOWN) are answers; anything else is a failure
            if KNOWN_LISTER.search(line):
                KNOWN["lister"].append(line)
            elif not re.search(r"No such file or directory|Host is down", line):
                errors.append(line)


def soak_round(shells, m, first, count):
    stop, counts, lerrors = threading.Event(), [0], []
    lt = threading.Thread(target=lister, args=(m, stop, counts, lerrors), daemon=True)
    lt.start()
    threads = [threading.Thread(target=s.run, args=(first, count), daemon=True) for s in shells]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SHELL_TIMEOUT * count * 2)
    stop.set()
    lt.join(SHELL_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a shell hangs"
    errors = [e for s in shells for e in s.errors]
    assert not errors, "\n".join(errors)
    assert not lerrors, "the lister saw:\n" + "\n".join(lerrors[:20])
    return counts[0]


@pytest.mark.timeout(max(180, 60 * ITERATIONS + 60))
def test_soak(make_mount, tmp_path):
    m = make_mount()  # (it stages in a cache directory of its own)
    KNOWN["lister"].clear()
    KNOWN["spools"].clear()
    # the lister reads files/ of sandboxes that shells are stopping or removing
    m.expect_fs_log(r"sandboxes/w\d+(x\d+)?/(files|runs|terminals)\S*: sandbox w\d+(x\d+)? is \w+")
    fs_pid, qd_pid = m.proc.pid, m.qd.proc.pid
    shells = [Shell(m, i) for i in range(SHELLS)]

    # warm-up: one round of everything, then its sandboxes go; the baseline
    t0 = time.monotonic()
    soak_round([Shell(m, 100 + i) for i in range(SHELLS)], m, 0, 1)
    m.sh("for s in sandboxes/*; do rmdir $s; done", timeout=SHELL_TIMEOUT)
    time.sleep(1.0)
    base = {"quaverfs": measure(fs_pid), "quaverd": measure(qd_pid)}
    base_fds = {"quaverfs": fd_targets(fs_pid), "quaverd": fd_targets(qd_pid)}

    listings = soak_round(shells, m, 0, ITERATIONS)
    took = time.monotonic() - t0

    # every file has the content last written, every sandbox the state asked
    m.write("control", "flush\n")
    qd = m.qd
    for s in shells:
        for name, state in s.states.items():
            rec = qd.get("sandbox", name)
            assert rec is not None and rec["state"] == state, (name, state, rec)
            assert m.read("sandboxes", name, "state") == state + "\n"
        for name in s.gone:
            assert qd.get("sandbox", name) is None, f"{name} was removed"
        for path, text in s.files.items():
            name = path.split("/")[1]
            if s.states[name] != "started":
                m.write(f"sandboxes/{name}/state", "start\n")
                s.states[name] = "started"
            assert m.read(path) == text, path
            sb_id = qd.get("sandbox", name)["id"]
            disk = qd.state_dir / "sandboxes" / sb_id / "root" / path.split("/files/", 1)[1]
            assert disk.read_text() == text, f"{path} on quaverd's disk"
    assert sorted(m.listdir("sandboxes")) == sorted(n for s in shells for n in s.states)

    # the soak's sandboxes go; then nothing is left over
    m.sh("for s in sandboxes/*; do rmdir $s; done", timeout=SHELL_TIMEOUT)
    assert m.listdir("sandboxes") == []
    after = {"quaverfs": settle_measure(fs_pid, base["quaverfs"]),
             "quaverd": settle_measure(qd_pid, base["quaverd"])}
    # runs/ forgets the sessions of a removed sandbox, and closes their
    # spools, within a second of its removal (a sweep every 250 ms)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(
            re.search(r"/#\d+ \(deleted\)$", t) and base_fds["quaverfs"].get(fd) != t
            for fd, t in fd_targets(fs_pid).items()):
        time.sleep(0.1)
    report = {k: (base[k], after[k]) for k in base}
    print(f"soak: {SHELLS} shells x {ITERATIONS} iterations "
          f"({sum(s.iterations for s in shells)} in all) and {listings} listings "
          f"in {took:.1f} s; before/after: {report}")
    for who, pid in (("quaverfs", fs_pid), ("quaverd", qd_pid)):
        b, a = base[who], after[who]
        now = fd_targets(pid)
        kinds = {"spools": [], "sockets": [], "others": []}
        for fd, target in now.items():
            if base_fds[who].get(fd) == target:
                continue
            if who == "quaverfs" and re.search(r"/#\d+ \(deleted\)$", target):
                kinds["spools"].append(target)  # runs/ output spools (KNOWN: none)
            elif target.startswith("socket:"):
                kinds["sockets"].append(target)
            else:
                kinds["others"].append(target)
        if who == "quaverfs":
            KNOWN["spools"] = kinds["spools"]
        gone = sum(1 for fd in base_fds[who] if fd not in now)
        # kept-alive connections come and go with the load: the client keeps
        # at most POOL_IDLE idle (3 fds each in quaverfs: the connection and
        # its multi handle's wakeup pair; 1 in quaverd), never more
        pool = POOL_IDLE * (3 if who == "quaverfs" else 1)
        assert len(kinds["sockets"]) - gone <= pool, f"{who} leaks sockets: {kinds['sockets']}"
        assert len(kinds["others"]) <= FD_SLACK, f"{who} leaks file descriptors: {kinds['others']}"
        assert a["threads"] <= b["threads"] + THREAD_SLACK, f"{who} leaks threads: {b} -> {a}"
        assert a["children"] <= b["children"], f"{who} leaks processes: {b} -> {a}"
        assert a["rss_kib"] <= b["rss_kib"] + RSS_BOUND_KIB, f"{who} memory grew: {b} -> {a}"
    assert sum(s.iterations for s in shells) == SHELLS * ITERATIONS


def test_soak_known_runs_defects():
    """What test_soak found and set aside (once defects of runs/, fixed): the
    output spools of the sessions of removed sandboxes stayed open (one fd
    per session); opendir of runs/ failed with EEXIST while sandboxes came
    and went. None of it may be there."""
    assert not KNOWN["spools"], f"{len(KNOWN['spools'])} spools of removed sandboxes still open"
    assert not KNOWN["lister"], KNOWN["lister"][:5]
