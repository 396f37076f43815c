"""Terminals over a real mount on a real quaverd (issue 5, "Terminals", and
the acceptance points on terminals and faults), as fs-layout.md's Terminals
section promises: the pty node (a terminal per open with write access),
terminals/ (mkdir, T/data, T/size, T/exit, T/env, rmdir), poll, interrupts,
bounded buffering, lost websockets, quaver-attach under tmux, and the
runAgentViaPty / runCommandViaPty recipes."""

import errno
import os
import re
import select
import shlex
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from files_helpers import bounded, create_sandbox
from fsmount import make_mount, mount_session, run  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parents[1]
SA, SB = "ta", "tb"


@pytest.fixture(scope="module")
def tm(tmp_path_factory, request):
    """One mount with sandboxes ta and tb."""
    def setup(m):
        create_sandbox(m, SA)
        create_sandbox(m, SB)
    yield from mount_session(tmp_path_factory.mktemp("terms"), request, setup)


class Term:
    """An open pty node or T/data: send keystrokes, wait for output."""

    def __init__(self, path):
        self.path = str(path)
        self.fd = os.open(self.path, os.O_RDWR)
        self.out = b""

    def send(self, text):
        data = text.encode() if isinstance(text, str) else text
        assert os.write(self.fd, data) == len(data)

    def expect(self, pattern, timeout=10.0):
        """Reads (with select) until @pattern (bytes regex) matches what came since
        the last match; returns the match."""
        rx = re.compile(pattern if isinstance(pattern, bytes) else pattern.encode())
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.out)
            if m:
                self.out = self.out[m.end():]
                return m
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not seen in {timeout} s; got {self.out[-400:]!r}"
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                chunk = os.read(self.fd, 65536)
                assert chunk, f"EOF before {pattern!r}; got {self.out[-400:]!r}"
                self.out += chunk

    def drain(self, quiet=0.5):
        """Reads until nothing comes for @quiet seconds."""
        while select.select([self.fd], [], [], quiet)[0]:
            if not os.read(self.fd, 65536):
                return

    def read_to_eof(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no EOF in {timeout} s; got {self.out[-400:]!r}"
            if select.select([self.fd], [], [], left)[0]:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return self.out
                self.out += chunk

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def pty_name():
    """The terminal the pty node gives this thread (fs-layout.md: pty-TID)."""
    return f"pty-{threading.get_native_id()}"


def prompt(t):
    """Waits for the first prompt, so what is typed is not echoed twice."""
    t.expect(rb"\$ ")


# ---- the pty node ------------------------------------------------------------

@bounded(60)
def test_pty_arithmetic_echo(tm):
    t = Term(tm.path("sandboxes", SA, "pty"))
    try:
        prompt(t)
        t.send("echo $((6*7))\n")
        t.expect(rb"[\r\n]42\r\n")
    finally:
        t.close()


@bounded(60)
def test_pty_resize_and_stty_size(tm):
    t = Term(tm.path("sandboxes", SA, "pty"))
    try:
        prompt(t)
        size = tm.path("sandboxes", SA, "terminals", pty_name(), "size")
        assert size.read_text() == "80 24\n"
        size.write_text("132 43\n")
        assert size.read_text() == "132 43\n"
        t.send("stty size\n")
        t.expect(rb"[\r\n]43 132\r\n")
    finally:
        t.close()


@bounded(60)
def test_pty_ctrl_c_interrupts_sleep(tm):
    t = Term(tm.path("sandboxes", SA, "pty"))
    try:
        prompt(t)
        t.send("sleep 100; echo slept\n")
        time.sleep(0.5)
        t0 = time.monotonic()
        t.send(b"\x03")
        t.send("echo after-$((1+1))\n")
        t.expect(rb"after-2\r\n", timeout=5)
        assert time.monotonic() - t0 < 5
        assert b"slept" not in t.out
    finally:
        t.close()


@bounded(60)
def test_pty_exit_gives_eof_and_the_code(tm):
    t = Term(tm.path("sandboxes", SA, "pty"))
    try:
        prompt(t)
        name = pty_name()
        assert name in os.listdir(tm.path("sandboxes", SA, "terminals"))
        t.send("exit 5\n")
        t.read_to_eof()
        assert os.read(t.fd, 100) == b""  # EOF stays EOF
        exit_node = tm.path("sandboxes", SA, "terminals", name, "exit")
        assert exit_node.read_text() == "5\n"
        with pytest.raises(OSError) as e:
            t.send("echo late\n")
        assert e.value.errno == errno.EIO
    finally:
        t.close()
    # the terminal was the handle's: gone with it
    deadline = time.monotonic() + 3
    while name in os.listdir(tm.path("sandboxes", SA, "terminals")):
        assert time.monotonic() < deadline, "the pty's terminal outlived its handle"
        time.sleep(0.1)


@bounded(60)
def test_pty_close_kills_the_shell(tm):
    t = Term(tm.path("sandboxes", SA, "pty"))
    prompt(t)
    name = pty_name()
    t.send("sleep 300\n")
    t.close()
    # the kernel sends the release after close() returns: give it a moment
    deadline = time.monotonic() + 3
    while True:
        r = tm.sh(f"ls sandboxes/{SA}/terminals")
        if name not in r.stdout.split():
            break
        assert time.monotonic() < deadline, r
        time.sleep(0.1)


@bounded(30)
def test_pty_read_only_open_starts_nothing(tm):
    before = sorted(os.listdir(tm.path("sandboxes", SA, "terminals")))
    r = tm.sh(f"cat sandboxes/{SA}/pty; grep -c x sandboxes/{SA}/pty", check=False)
    assert r.stdout == "0\n" and r.elapsed < 5, r
    assert sorted(os.listdir(tm.path("sandboxes", SA, "terminals"))) == before
    st = os.stat(tm.path("sandboxes", SA, "pty"))
    assert oct(st.st_mode & 0o777) == "0o644"


@bounded(60)
def test_poll_readiness(tm):
    t = Term(tm.path("sandboxes", SA, "pty"))
    try:
        prompt(t)
        t.drain()
        p = select.poll()
        p.register(t.fd, select.POLLIN | select.POLLOUT)
        ev = dict(p.poll(0))
        assert ev.get(t.fd, 0) & select.POLLOUT
        assert not ev.get(t.fd, 0) & select.POLLIN, "readable with nothing to read"
        t.send("sleep 0.3; echo ready-$((2+3))\n")
        t.expect(rb"sleep 0\.3; echo ready-\$\(\(2\+3\)\)\r\n")  # the echo of the typing
        t0 = time.monotonic()
        assert select.select([t.fd], [], [], 5)[0] == [t.fd]
        t.expect(rb"ready-5")
        assert time.monotonic() - t0 < 3
        # exit: not readable while the shell runs, readable once it has ended
        efd = os.open(tm.path("sandboxes", SA, "terminals", pty_name(), "exit"), os.O_RDONLY)
        try:
            assert select.select([efd], [], [], 0.3)[0] == []
            t.send("exit 2\n")
            assert select.select([efd], [], [], 5)[0] == [efd]
            assert os.read(efd, 10) == b"2\n"
        finally:
            os.close(efd)
        t.read_to_eof()
    finally:
        t.close()


@bounded(60)
def test_two_terminals_at_once(tm):
    a = Term(tm.path("sandboxes", SA, "pty"))
    b = Term(tm.path("sandboxes", SA, "pty"))
    c = Term(tm.path("sandboxes", SB, "pty"))
    try:
        names = os.listdir(tm.path("sandboxes", SA, "terminals"))
        assert pty_name() in names and f"{pty_name()}-2" in names, names
        for t in (a, b, c):
            prompt(t)
        a.send("echo one-$((10+1))\n")
        b.send("echo two-$((20+2))\n")
        c.send("hostname; echo three-$((30+3))\n")
        a.expect(rb"one-11\r\n")
        b.expect(rb"two-22\r\n")
        c.expect(rb"tb\r\n.*three-33\r\n")
        for t in (a, b, c):
            t.drain(0.3)
        assert b"two-22" not in a.out and b"one-11" not in b.out
    finally:
        for t in (a, b, c):
            t.close()


# ---- terminals/ ---------------------------------------------------------------

@bounded(90)
def test_persistent_terminal_with_env_size_exit_rmdir(tm):
    base = tm.path("sandboxes", SA, "terminals")
    tdir = base / "work1"
    os.mkdir(tdir)
    assert "work1" in os.listdir(base)
    assert sorted(os.listdir(tdir)) == ["data", "env", "exit", "size"]
    assert oct(os.stat(tdir / "exit").st_mode & 0o777) == "0o444"
    with pytest.raises(FileExistsError):
        os.mkdir(tdir)
    (tdir / "env").write_text("GREETING=hello there\nOTHER=x\n")
    assert (tdir / "env").read_text() == "GREETING\nOTHER\n"  # names only
    (tdir / "size").write_text("100 30\n")
    t = Term(tdir / "data")  # the shell starts here
    try:
        prompt(t)
        t.send('echo "[$GREETING]"; stty size\n')
        t.expect(rb"\[hello there\]\r\n30 100\r\n")
        with pytest.raises(OSError) as e:
            (tdir / "env").write_text("LATE=1\n")
        assert e.value.errno == errno.EBUSY
        t.send("sleep 1; echo later-$((3*3))\n")
    finally:
        t.close()
    # persistent: it runs on with nobody reading, and its output waits
    time.sleep(1.5)
    t = Term(tdir / "data")
    try:
        t.expect(rb"later-9\r\n")
        t.send("exit 3\n")
        t.read_to_eof()
    finally:
        t.close()
    assert (tdir / "exit").read_text() == "3\n"
    # an ended terminal stays until rmdir, with its code
    assert "work1" in os.listdir(base)
    os.rmdir(tdir)
    assert "work1" not in os.listdir(base)
    with pytest.raises(FileNotFoundError):
        (tdir / "exit").read_text()


@bounded(30)
def test_mkdir_names_and_errors(tm):
    base = tm.path("sandboxes", SA, "terminals")
    for bad in ("-x", ".hidden", "a b"):
        with pytest.raises(OSError) as e:
            os.mkdir(base / bad)
        assert e.value.errno in (errno.EINVAL, errno.ENOENT), bad
    with pytest.raises(OSError) as e:
        (base / "nope" / "data").read_text()
    assert e.value.errno == errno.ENOENT
    with pytest.raises(OSError) as e:
        os.mkdir(tm.path("sandboxes", SA, "terminals", "x", "y"))
    assert e.value.errno == errno.ENOENT
    os.mkdir(base / "sized")
    with pytest.raises(OSError) as e:
        (base / "sized" / "size").write_text("0 10\n")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        (base / "sized" / "env").write_text("1BAD=x\n")
    assert e.value.errno == errno.EINVAL
    os.rmdir(base / "sized")


def toolbox_url(m, sandbox):
    """The sandbox's toolboxProxyUrl (its own port in quaverd's cloud-like mode)."""
    import json
    return json.loads(m.read("sandboxes", sandbox, "info.json"))["toolboxProxyUrl"].rstrip("/")


def toolbox(tm, method, path, body=None):
    """A toolbox call to quaverd for sandbox SA (as the SDK would make it)."""
    import json
    import urllib.request
    sb_id = tm.read("sandboxes", SA, "id").strip()
    base = toolbox_url(tm, SA)
    req = urllib.request.Request(f"{base}/{sb_id}/{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {tm.qd.token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


@bounded(60)
def test_terminal_made_by_the_api_is_listed_and_attachable(tm):
    name = "sdk-" + uuid.uuid4().hex[:8]
    status, _ = toolbox(tm, "POST", "process/pty", {"id": name, "cols": 90, "rows": 20})
    assert status == 201
    base = tm.path("sandboxes", SA, "terminals")
    assert name in os.listdir(base)
    assert (base / name / "size").read_text() == "90 20\n"
    t = Term(base / name / "data")
    try:
        t.send("echo api-$((7*6))\n")
        t.expect(rb"api-42\r\n")
    finally:
        t.close()
    os.rmdir(base / name)  # kills it on the backend too
    assert toolbox(tm, "GET", f"process/pty/{name}")[0] == 404
    # one only looked at here and killed elsewhere leaves the listing
    other = name + "-b"
    assert toolbox(tm, "POST", "process/pty", {"id": other})[0] == 201
    assert (base / other / "size").read_text() == "80 24\n"
    assert toolbox(tm, "DELETE", f"process/pty/{other}")[0] == 200
    assert other not in os.listdir(base)


@bounded(60)
def test_rmdir_gives_blocked_readers_eof(tm):
    tdir = tm.path("sandboxes", SA, "terminals", "gone1")
    os.mkdir(tdir)
    Term(tdir / "data").close()  # start it
    reader = subprocess.Popen(["cat", str(tdir / "data")], stdout=subprocess.DEVNULL)
    exiter = subprocess.Popen(["cat", str(tdir / "exit")], stdout=subprocess.PIPE)
    time.sleep(0.5)
    assert reader.poll() is None and exiter.poll() is None
    os.rmdir(tdir)
    assert reader.wait(5) == 0
    assert exiter.communicate(timeout=5)[0] == b"137\n"


@bounded(60)
@pytest.mark.parametrize("node", ["data", "exit"])
def test_ctrl_c_on_a_blocked_read(tm, node):
    tdir = tm.path("sandboxes", SA, "terminals", f"intr-{node}")
    os.mkdir(tdir)
    try:
        t = Term(tdir / "data")
        prompt(t)
        t.drain(0.3)
        t.close()
        p = subprocess.Popen(["cat", str(tdir / node)], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        assert p.poll() is None, "the read did not block"
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        assert p.wait(5) != 0
        assert time.monotonic() - t0 < 1.0, "Ctrl-C took more than 1 s"
        # the terminal goes on
        t = Term(tdir / "data")
        t.send("echo alive-$((1+4))\n")
        t.expect(rb"alive-5\r\n")
        t.close()
    finally:
        os.rmdir(tdir)


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@bounded(120)
def test_a_reader_that_stops_reading_blocks_nobody(tm):
    tm.expect_fs_log(r"output not read fast enough")  # the ring drops, or quaverd closes 1008
    tdir = tm.path("sandboxes", SA, "terminals", "flood")
    os.mkdir(tdir)
    flood = Term(tdir / "data")
    other = Term(tm.path("sandboxes", SB, "pty"))
    try:
        prompt(other)
        before = rss_kib(tm.proc.pid)
        # 64 MiB of output nobody reads
        flood.send("head -c 67108864 /dev/zero | tr '\\0' x; echo; echo flood-done\n")
        t0 = time.monotonic()
        rounds = 0
        while time.monotonic() - t0 < 6:
            rounds += 1
            s = time.monotonic()
            other.send(f"echo round-{rounds}-$(({rounds}+0))\n")
            other.expect(rf"round-{rounds}-{rounds}\r\n".encode(), timeout=5)
            # generous: two cores also run the flood; held up would mean never
            assert time.monotonic() - s < 3, "the other sandbox's terminal was held up"
            time.sleep(0.2)
        assert rounds >= 5
        # the flood finished on the backend while unread; what is kept is bounded
        exit_wait = time.monotonic() + 60
        while True:
            flood.send("echo flood-check-$((5*5))\n")
            time.sleep(1)
            tail = b""
            while select.select([flood.fd], [], [], 0.2)[0]:
                chunk = os.read(flood.fd, 1 << 20)
                tail += chunk
                assert len(tail) <= (1 << 20) + (64 << 10), "more kept than the ring holds"
            if b"flood-check-25" in tail:
                break
            assert time.monotonic() < exit_wait, "the flood never ended"
        grown = rss_kib(tm.proc.pid) - before
        assert grown < 48 * 1024, f"quaverfs grew {grown} KiB"
    finally:
        flood.close()
        other.close()
        os.rmdir(tdir)


# ---- faults --------------------------------------------------------------------

def test_websocket_dropped_reader_gets_eio(make_mount):
    m = make_mount()
    create_sandbox(m, "fw")
    m.expect_fs_log(r"connection to the terminal was lost")
    t = Term(m.path("sandboxes", "fw", "pty"))
    name = pty_name()
    try:
        prompt(t)
        # kill quaverfs's connections to quaverd's toolbox (the websocket among them)
        port = toolbox_url(m, "fw").split(":")[-1].split("/")[0]
        r = run(["ss", "-K", "dst", "127.0.0.1", "dport", "=", f":{port}"])
        assert r.returncode == 0, r
        t0 = time.monotonic()
        with pytest.raises(OSError) as e:
            while select.select([t.fd], [], [], 5)[0]:
                if not os.read(t.fd, 65536):
                    break
            else:
                raise AssertionError("the reader hangs after the websocket dropped")
        assert e.value.errno == errno.EIO
        assert time.monotonic() - t0 < 3
        with pytest.raises(OSError) as e:
            (m.path("sandboxes", "fw", "terminals", name, "exit")).read_text()
        assert e.value.errno == errno.EIO
    finally:
        t.close()


def test_quaverd_killed_mid_session(make_mount):
    m = make_mount()
    create_sandbox(m, "fk")
    m.expect_fs_log(r"connection to the terminal was lost|refused|connect|unreachable|"
                    r"could not be killed")
    t = Term(m.path("sandboxes", "fk", "pty"))
    tdir = m.path("sandboxes", "fk", "terminals", "long")
    os.mkdir(tdir)
    reader = subprocess.Popen(["cat", str(tdir / "data")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        prompt(t)
        t.send("sleep 100\n")
        time.sleep(0.5)
        m.qd.kill(signal.SIGKILL)
        t0 = time.monotonic()
        got = None
        try:
            while True:
                assert select.select([t.fd], [], [], 5)[0], "the reader hangs"
                if not os.read(t.fd, 65536):
                    got = "EOF"
                    break
        except OSError as e:
            got = errno.errorcode[e.errno]
        assert got in ("EOF", "EIO")
        assert time.monotonic() - t0 < 3
        _, err = reader.communicate(timeout=5)
        assert reader.returncode != 0 and b"Input/output error" in err
    finally:
        t.close()
        m.qd.start()


# ---- quaver-attach ---------------------------------------------------------------

def attach_bin():
    return os.environ.get("QUAVER_ATTACH_BIN") or str(REPO / "build" / "src" / "attach" /
                                                       "quaver-attach")


class Tmux:
    def __init__(self, tmp):
        self.sock = f"qa-{uuid.uuid4().hex[:8]}"
        self.tmp = Path(tmp)

    def __call__(self, *args, check=True):
        r = run(["tmux", "-L", self.sock, *args], timeout=10)
        if check:
            assert r.returncode == 0, r
        return r

    def start(self, command, cols=100, rows=30):
        env = ["-e", f"QUAVER_ATTACH_BIN={attach_bin()}"]
        self("new-session", "-d", "-s", "a", "-x", str(cols), "-y", str(rows), *env,
             "bash", "--norc", "-c", command)

    def screen(self):
        return self("capture-pane", "-p", "-t", "a").stdout

    def wait_for(self, text, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            s = self.screen()
            if re.search(text, s):
                return s
            assert time.monotonic() < deadline, f"{text!r} not on the screen:\n{s}"
            time.sleep(0.1)

    def keys(self, *keys):
        self("send-keys", "-t", "a", *keys)

    def kill(self):
        self("kill-server", check=False)


@pytest.mark.timeout(90)
def test_quaver_attach_under_tmux(tm, tmp_path):
    rc_file, stty_file = tmp_path / "rc", tmp_path / "stty"
    sbdir = tm.path("sandboxes", SA)
    tool = REPO / "tools" / "quaver-attach"
    tx = Tmux(tmp_path)
    tx.start(f"{tool} {shlex.quote(str(sbdir))}; echo rc=$? > {rc_file}; "
             f"stty -a > {stty_file}; sleep 60")
    try:
        tx.wait_for(r"daytona@ta:~\$")
        tx.keys("stty size", "Enter")
        tx.wait_for(r"(?m)^30 100\s*$")
        tx("resize-window", "-t", "a", "-x", "120", "-y", "40")
        time.sleep(0.5)
        tx.keys("clear; stty size", "Enter")
        tx.wait_for(r"(?m)^40 120\s*$")
        tx.keys("vi /tmp/attach-test.txt", "Enter")
        tx.wait_for(r"(?m)^~\s*$")  # the empty lines of a full-screen vi
        tx.keys("i", "hello from vi", "Escape", ":wq", "Enter")
        tx.wait_for(r"vi /tmp/attach-test\.txt\s*\n.*daytona@ta:~\$")
        tx.keys("clear; cat /tmp/attach-test.txt; top -b -n 1 | head -3", "Enter")
        tx.wait_for(r"hello from vi[\s\S]*Tasks:")
        tx.keys("top -n 1", "Enter")  # full screen, ends by itself
        tx.wait_for(r"PID USER")
        tx.keys("exit 7", "Enter")
        deadline = time.monotonic() + 10
        while not rc_file.exists() or not stty_file.exists():
            assert time.monotonic() < deadline, tx.screen()
            time.sleep(0.1)
        time.sleep(0.2)
        assert rc_file.read_text() == "rc=7\n"
        stty = stty_file.read_text()
        # the local terminal is back in cooked mode
        assert re.search(r"(?<!-)icanon\b", stty) and re.search(r"(?<!-)echo\b", stty), stty
    finally:
        tx.kill()


@pytest.mark.timeout(60)
def test_quaver_attach_restores_the_terminal_on_sigterm(tm, tmp_path):
    rc_file, stty_file = tmp_path / "rc", tmp_path / "stty"
    tool = REPO / "tools" / "quaver-attach"
    tx = Tmux(tmp_path)
    tx.start(f"{tool} {shlex.quote(str(tm.path('sandboxes', SA)))} & pid=$!; "
             f"sleep 2; kill -TERM $pid; wait $pid; echo rc=$? > {rc_file}; "
             f"stty -a > {stty_file}; sleep 60")
    try:
        deadline = time.monotonic() + 15
        while not stty_file.exists():
            assert time.monotonic() < deadline, tx.screen()
            time.sleep(0.1)
        time.sleep(0.2)
        assert rc_file.read_text() == "rc=143\n"
        stty = stty_file.read_text()
        assert re.search(r"(?<!-)icanon\b", stty) and re.search(r"(?<!-)echo\b", stty), stty
    finally:
        tx.kill()


# ---- recipes (README and fs-layout.md) ---------------------------------------------

AGENT = """#!/bin/sh
# a stand-in for a command-line agent: reads its key from the environment
echo "agent: task is: $1"
if [ "$ANTHROPIC_API_KEY" = "sk-test-$2" ]; then echo "agent: key ok"; else echo "agent: no key"; fi
for i in 1 2 3; do echo "agent: step $i"; sleep 0.2; done
exit 4
"""


@bounded(60)
def test_run_agent_via_pty_recipe(tm, tmp_path):
    secret = uuid.uuid4().hex
    (tm.path("sandboxes", SA, "files", "home", "daytona", "agent.sh")).write_text(AGENT)
    os.chmod(tm.path("sandboxes", SA, "files", "home", "daytona", "agent.sh"), 0o755)
    log = tmp_path / "agent.log"
    # the recipe of fs-layout.md, as written there
    script = f"""
set -e
export ANTHROPIC_API_KEY=sk-test-{secret}
T=sandboxes/{SA}/terminals/agent1
mkdir $T
echo "ANTHROPIC_API_KEY=$ANTHROPIC_API_KEY" > $T/env
cat $T/data > {log} &
echo "exec ./agent.sh 'write a benchmark' {secret}" > $T/data
code=$(cat $T/exit)
wait
rmdir $T
echo "exit=$code"
"""
    r = tm.sh(script, timeout=45)
    assert r.stdout == "exit=4\n", r
    text = log.read_text(errors="replace")
    for line in ("agent: task is: write a benchmark", "agent: key ok", "agent: step 3"):
        assert line in text, text
    assert f"sk-test-{secret}" not in text
    assert f"sk-test-{secret}" not in tm.log_text()


@bounded(60)
def test_run_command_via_pty_recipe(tm, tmp_path):
    out = tmp_path / "out.log"
    script = f"""
exec 3<>sandboxes/{SA}/pty
echo 'cd /tmp && printf "%s\\n" one two && false; exit $?' >&3
cat <&3 > {out}
cat sandboxes/{SA}/terminals/pty-$$/exit
exec 3>&-
"""
    r = tm.sh(script, timeout=45)
    assert r.stdout == "1\n", r
    text = out.read_bytes()
    assert b"one\r\ntwo\r\n" in text, text
