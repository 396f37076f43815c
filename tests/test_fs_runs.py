"""runs/ over a real mount on a real quaverd (issue 5, "Commands and code",
and the acceptance points on isolation, volumes and faults), driven from
plain shell commands as fs-layout.md's runs/ section promises:
`mkdir runs/S`, `echo CMD > runs/S/command`, `cat runs/S/output`,
`cat runs/S/exit`.
"""

import errno
import json
import os
import select
import signal
import subprocess
import threading
import time

import pytest

from files_helpers import Toolbox, bounded, create_sandbox
from fsmount import mount_session, run

SB = "rx"


@pytest.fixture(scope="module")
def rm(tmp_path_factory, request):
    """One mount, sandbox rx (python) and jsb (javascript), tsb (typescript)."""
    def setup(m):
        create_sandbox(m, SB)
    yield from mount_session(tmp_path_factory.mktemp("runs"), request, setup)


_serial = [0]


@pytest.fixture
def sess(rm, request):
    """A fresh session of rx: its directory (a Path)."""
    _serial[0] += 1
    name = f"s{_serial[0]}"
    path = rm.path("sandboxes", SB, "runs", name)
    os.mkdir(path)
    yield path


def run_cmd(session, line, timeout=60):
    """echo LINE > command, then the output (cat returns at the exit) and the exit code."""
    with open(session / "command", "w") as f:
        f.write(line + "\n")
    out = subprocess.run(["cat", str(session / "output")], capture_output=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr
    code = (session / "exit").read_text()
    return out.stdout.decode(errors="replace"), int(code)


@bounded(60)
def test_echo_hi(rm, sess):
    # as a user types it
    r = rm.sh(f"echo 'echo hi' > {sess}/command && cat {sess}/output && cat {sess}/exit")
    assert r.stdout == "hi\n0\n", r


@bounded(60)
def test_exit_code(rm, sess):
    assert run_cmd(sess, "false") == ("", 1)
    assert run_cmd(sess, "(exit 3)") == ("", 3)
    # exit ends the session's shell, and its code is the command's
    out, code = run_cmd(sess, "exit 3")
    assert code == 3
    # then the session takes no command: EPIPE, with the reason in the error nodes
    rm.expect_fs_log(r"runs/.*has ended")
    rel = os.path.relpath(sess / "command", rm.mnt)
    assert rm.errno_write(rel, "echo again\n") == errno.EPIPE
    assert "has ended" in rm.read("sandboxes", SB, "error")


@bounded(60)
def test_session_keeps_cwd_and_exports(rm, sess):
    run_cmd(sess, "cd /tmp && mkdir -p here && cd here")
    run_cmd(sess, "export GREETING='hello there'")
    assert run_cmd(sess, 'pwd; echo "$GREETING"') == ("/tmp/here\nhello there\n", 0)


@bounded(60)
def test_stdout_and_stderr_in_order(rm, sess):
    # two pipes: what is written 0.2 s apart keeps its order
    out, code = run_cmd(sess, "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three; "
                        "sleep 0.2; echo four >&2")
    assert out == "one\ntwo\nthree\nfour\n" and code == 0


@bounded(90)
def test_streaming_while_running(rm, sess):
    line = "for i in $(seq 1 10); do echo line $i; sleep 2; done"
    with open(sess / "command", "w") as f:
        f.write(line)
    start = time.monotonic()
    arrivals = []
    with open(sess / "output", "rb", buffering=0) as f:
        buf = b""
        while True:
            chunk = f.read(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                got, _, buf = buf.partition(b"\n")
                arrivals.append((time.monotonic() - start, got.decode()))
    assert [a[1] for a in arrivals] == [f"line {i}" for i in range(1, 11)]
    # line i arrives about 2*(i-1) s in: over time, not all at the end
    assert arrivals[0][0] < 2.0, arrivals
    assert arrivals[4][0] < arrivals[9][0] - 6, arrivals
    for i in range(1, 10):
        assert arrivals[i][0] - arrivals[i - 1][0] > 1.0, arrivals
    assert (sess / "exit").read_text() == "0\n"


@bounded(60)
def test_tail_f_follows(rm, sess):
    with open(sess / "command", "w") as f:
        f.write("for i in 1 2 3; do echo tick $i; sleep 0.7; done")
    # tail -f keeps following after the exit (no "file truncated"); timeout ends it
    r = run(["timeout", "4", "tail", "-f", str(sess / "output")], timeout=30)
    assert r.stdout == "tick 1\ntick 2\ntick 3\n" and r.stderr == "", r
    assert r.returncode == 124, r


@bounded(120)
def test_big_output_arrives_whole(rm, sess):
    # 50 MB of numbered lines: every line once, in order
    run_cmd(sess, "seq -w 1 5000000 > /tmp/big.txt; wc -c < /tmp/big.txt")
    want = subprocess.run("seq -w 1 5000000 | sha256sum", shell=True, capture_output=True,
                          text=True).stdout.split()[0]
    with open(sess / "command", "w") as f:
        f.write("cat /tmp/big.txt")
    got = subprocess.run(f"cat {sess}/output | tee >(wc -c >&2) | sha256sum", shell=True,
                         executable="/bin/bash", capture_output=True, text=True, timeout=100)
    assert int(got.stderr.strip()) == 5000000 * 8
    assert got.stdout.split()[0] == want
    assert (sess / "exit").read_text() == "0\n"


@bounded(60)
def test_earlier_commands_stay_readable(rm, sess):
    run_cmd(sess, "echo first")
    run_cmd(sess, "echo second >&2; exit 0")
    ids = os.listdir(sess / "commands")  # in the order they ran (ls -U)
    assert len(ids) == 2
    texts = {(sess / "commands" / i / "command").read_text(): i for i in ids}
    first = texts["echo first\n"]
    assert ids == [first, texts["echo second >&2; exit 0\n"]]
    assert (sess / "commands" / first / "output").read_text() == "first\n"
    assert (sess / "commands" / first / "exit").read_text() == "0\n"
    assert (sess / "command").read_text() == "echo second >&2; exit 0\n"


@bounded(60)
def test_ls_lists_sessions_and_rmdir_removes(rm, sess):
    runs = sess.parent
    assert sess.name in os.listdir(runs)
    with open(sess / "command", "w") as f:
        f.write("sleep 100")
    os.rmdir(sess)
    assert sess.name not in os.listdir(runs)
    with pytest.raises(FileNotFoundError):
        os.stat(sess / "output")


@bounded(60)
def test_sessions_made_through_the_api_are_listed(rm):
    tb = Toolbox(rm.qd, SB)
    status, raw, _ = tb.request("POST", "process/session", body=json.dumps({"sessionId": "api1"}),
                                headers={"Content-Type": "application/json"})
    assert status in (200, 201), raw
    status, raw, _ = tb.request("POST", "process/session/api1/exec",
                                body=json.dumps({"command": "echo from the api"}),
                                headers={"Content-Type": "application/json"})
    assert status == 200, raw
    runs = rm.path("sandboxes", SB, "runs")
    deadline = time.monotonic() + 2.5
    while "api1" not in os.listdir(runs) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "api1" in os.listdir(runs)
    assert (runs / "api1" / "output").read_text() == "from the api\n"
    assert (runs / "api1" / "exit").read_text() == "0\n"
    assert (runs / "api1" / "command").read_text() == "echo from the api\n"
    os.rmdir(runs / "api1")
    status, _, _ = tb.request("GET", "process/session/api1")
    assert status == 404


@bounded(60)
def test_stdin_feeds_the_running_command(rm, sess):
    with open(sess / "command", "w") as f:
        f.write("read a; read b; echo \"got $a and $b\"")
    with open(sess / "stdin", "w") as f:
        f.write("one\n")
    with open(sess / "stdin", "w") as f:
        f.write("two\n")
    assert (sess / "output").read_text() == "got one and two\n"
    assert (sess / "exit").read_text() == "0\n"


@bounded(60)
def test_python_code(rm, sess):
    prog = "import sys\nprint(sum(range(10)))\nprint('err', file=sys.stderr)\n"
    (sess / "code").write_text(prog)
    assert (sess / "output").read_text() == "45\nerr\n"
    assert (sess / "exit").read_text() == "0\n"
    (sess / "code").write_text("print('unclosed'\n")
    out = (sess / "output").read_text()
    assert "SyntaxError" in out, out
    assert (sess / "exit").read_text() != "0\n"
    # a program of 1.9 MB (sent as a file, not inside the command), in several writes
    big = "x = [" + ",".join(str(i) for i in range(300000)) + "]\nprint(len(x), x[-1])\n"
    assert len(big) > 1900000
    (sess / "code").write_text(big)
    assert (sess / "output").read_text() == "300000 299999\n"
    assert (sess / "exit").read_text() == "0\n"


@pytest.fixture(scope="module")
def code_sb(rm):
    """Sandbox cx, whose language the tests set through its label."""
    create_sandbox(rm, "cx")
    return rm.path("sandboxes", "cx")


def code_session(code_sb, lang, name):
    (code_sb / "labels" / "code-toolbox-language").write_text(lang + "\n")
    path = code_sb / "runs" / name
    os.mkdir(path)
    return path


def run_code(session, program):
    (session / "code").write_text(program)
    return (session / "output").read_text(), int((session / "exit").read_text())


@bounded(60)
def test_javascript_code(rm, code_sb):
    s = code_session(code_sb, "javascript", "js")
    assert run_code(s, "const xs = [1, 2, 3];\nconsole.log(xs.map(x => x * 2).join(','));\n"
                    "console.error('to stderr');\n") == ("2,4,6\nto stderr\n", 0)
    out, code = run_code(s, "console.log('a';\n")
    assert code != 0 and "SyntaxError" in out, out


@bounded(60)
def test_typescript_code(rm, code_sb):
    s = code_session(code_sb, "typescript", "ts")
    prog = ("interface P { x: number; y: number }\n"
            "const p: P = { x: 3, y: 4 };\n"
            "console.log(Math.hypot(p.x, p.y));\n")
    assert run_code(s, prog) == ("5\n", 0)
    out, code = run_code(s, "const a: number = ;\n")
    assert code != 0 and "error" in out.lower(), out


# ---- poll, Ctrl-C, a stopped sandbox ----------------------------------------------------


@bounded(60)
def test_poll_on_output_and_exit(rm, sess):
    with open(sess / "command", "w") as f:
        f.write("sleep 1.5; echo x; sleep 1")
    out = os.open(sess / "output", os.O_RDONLY)
    ex = os.open(sess / "exit", os.O_RDONLY)
    try:
        r, _, _ = select.select([out, ex], [], [], 0.5)
        assert r == [], "readable before anything happened"
        t0 = time.monotonic()
        r, _, _ = select.select([out], [], [], 10)
        assert r == [out] and 0.5 < time.monotonic() - t0 < 5
        assert os.read(out, 100) == b"x\n"
        p = select.poll()
        p.register(ex, select.POLLIN)
        assert p.poll(300) == []
        assert p.poll(10000) == [(ex, select.POLLIN)]
        assert os.read(ex, 100) == b"0\n"
        assert os.read(out, 100) == b""
    finally:
        os.close(out)
        os.close(ex)


WAIT_AND_CATCH = """
import signal, sys, time
def on_int(*a):
    raise KeyboardInterrupt
signal.signal(signal.SIGINT, on_int)
print("waiting", flush=True)
try:
    open(sys.argv[1]).read()
    print("read")
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
"""


@bounded(60)
def test_ctrl_c_ends_a_waiting_read(rm, sess):
    with open(sess / "command", "w") as f:
        f.write("sleep 30")
    for node in ("exit", "output"):
        # a SIGINT the reader survives: its read returns only if quaverfs answers
        p = subprocess.Popen(["/usr/bin/python3", "-c", WAIT_AND_CATCH, str(sess / node)],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "waiting\n"
        time.sleep(0.5)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=10)
        assert out.startswith("interrupted"), out
        assert float(out.split()[1]) - t0 < 1.0, (node, out)
    os.rmdir(sess)


# ---- the sandbox's files and isolation --------------------------------------------------


@bounded(60)
def test_files_written_by_commands_and_through_files(rm, sess):
    home = rm.path("sandboxes", SB, "files", "home", "daytona")
    assert run_cmd(sess, "echo made by a command > /home/daytona/by-cmd.txt") == ("", 0)
    assert (home / "by-cmd.txt").read_text() == "made by a command\n"
    (home / "by-files.txt").write_text("made through files/\n")
    assert run_cmd(sess, "cat /home/daytona/by-files.txt") == ("made through files/\n", 0)


REPO = str(__import__("pathlib").Path(__file__).resolve().parents[1])


@bounded(90)
def test_isolation_through_run_nodes(rm, sess):
    out, _ = run_cmd(sess, "ps -eo pid=,comm=")
    procs = [line.split(None, 1) for line in out.splitlines() if line.strip()]
    # the sandbox's init, the shells of its sessions and what they run: nothing of the host
    assert procs[0] == ["1", "quaverd-init"], procs
    assert {comm for _, comm in procs} <= {"quaverd-init", "bash", "ps", "sleep"}, procs
    # another sandbox's file, the host's secrets, quaverd's state, this checkout
    create_sandbox(rm, "ox")
    other = rm.path("sandboxes", "ox", "runs", "o")
    os.mkdir(other)
    marker = f"marker-{os.getpid()}-{time.monotonic_ns()}"
    assert run_cmd(other, f"echo secret > /home/daytona/{marker}") == ("", 0)
    ox_id = rm.read("sandboxes", "ox", "id").strip()
    paths = ["/etc/shadow", str(rm.qd.state_dir), str(rm.qd.state_dir / "token"), REPO,
             REPO + "/src/fs/runs.c", str(rm.qd.state_dir / "sandboxes" / ox_id),
             f"/proc/1/root/home/daytona/{marker}"]
    script = "; ".join(f"if cat '{p}' >/dev/null 2>&1 || ls '{p}' >/dev/null 2>&1; "
                       f"then echo 'reached {p}'; fi" for p in paths)
    assert run_cmd(sess, script) == ("", 0)
    out, _ = run_cmd(sess, f"find / -xdev -name '{marker}' 2>/dev/null; true")
    assert out == ""
    os.rmdir(other)
    rm.sh("rmdir sandboxes/ox")


def host_pids_with(tag):
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if tag.encode() in f.read():
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def pid_ns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def running(pid):
    """Not a zombie: a zombie runs nothing and holds nothing but its pid (its
    reaping is up to whoever it was reparented to, here the host's pid 1)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def in_namespace(ns):
    return {int(d) for d in os.listdir("/proc")
            if d.isdigit() and pid_ns(d) == ns and running(d)}


@bounded(90)
def test_stop_kills_a_fork_bomb_and_a_detached_process(rm):
    create_sandbox(rm, "kx")
    s = rm.path("sandboxes", "kx", "runs", "k")
    os.mkdir(s)
    tag = f"{1000 + os.getpid() % 1000}.{time.monotonic_ns() % 1000000}"
    run_cmd(s, f"setsid nohup sleep {tag} >/dev/null 2>&1 < /dev/null & true")
    deadline = time.monotonic() + 10
    while not host_pids_with(f"sleep\0{tag}") and time.monotonic() < deadline:
        time.sleep(0.05)
    detached = host_pids_with(f"sleep\0{tag}")
    assert detached
    ns = pid_ns(detached[0])
    with open(s / "command", "w") as f:
        f.write("bomb() { bomb | bomb & }; bomb")
    seen = set()
    t_end = time.monotonic() + 1.5
    while time.monotonic() < t_end:
        seen |= in_namespace(ns)
        time.sleep(0.05)
    assert len(seen) > 10, seen
    rm.write("sandboxes/kx/state", "stop\n")
    # SIGKILLed processes may still be in the kernel's exit path for a moment
    deadline = time.monotonic() + 2
    while True:
        alive = [p for p in seen | in_namespace(ns) if pid_ns(p) == ns and running(p)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert alive == []
    # a stopped sandbox has no sessions (stop ended them) and makes none:
    # EHOSTDOWN, and the reason in its error node
    time.sleep(1.1)  # the kernel's entries of runs/k expire
    assert rm.listdir("sandboxes/kx/runs") == []
    assert rm.errno_read("sandboxes/kx/runs/k/output") == errno.ENOENT
    rm.expect_fs_log(r"sandboxes/kx/runs.*stopped")
    with pytest.raises(OSError) as e:
        os.mkdir(rm.path("sandboxes", "kx", "runs", "again"))
    assert e.value.errno == errno.EHOSTDOWN
    assert "stopped" in rm.read("sandboxes", "kx", "error")
    rm.sh("rmdir sandboxes/kx")


@bounded(90)
def test_volume_subpaths(rm):
    rm.sh("mkdir volumes/rv")
    for name, sub in (("va", "a"), ("vb", "b"), ("va2", "a")):
        create_sandbox(rm, name, f"volume=rv:/mnt/v:{sub}")
        os.mkdir(rm.path("sandboxes", name, "runs", "v"))

    def cmd(name, line):
        return run_cmd(rm.path("sandboxes", name, "runs", "v"), line)

    assert cmd("va", "echo from-a > /mnt/v/note") == ("", 0)
    assert cmd("vb", "ls -A /mnt/v") == ("", 0)
    assert cmd("va2", "cat /mnt/v/note; echo from-a2 >> /mnt/v/note") == ("from-a\n", 0)
    assert cmd("va", "cat /mnt/v/note") == ("from-a\nfrom-a2\n", 0)
    for name in ("va", "vb", "va2"):
        rm.sh(f"rmdir sandboxes/{name}")


def spools(pid):
    """The unlinked files of its cache dir quaverfs @pid has open (runs/ output
    spools among them), as {fd: target}."""
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.endswith(" (deleted)") and ("/#" in target or "/runs-" in target):
            found[fd] = target
    return found


def still_open(pid, kept, timeout=3.0):
    """Which of @kept ({fd: target}) @pid still has open after up to @timeout."""
    deadline = time.monotonic() + timeout
    while True:
        now = spools(pid)
        left = {fd: t for fd, t in kept.items() if now.get(fd) == t}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@bounded(90)
def test_what_a_session_kept_goes_with_it_and_its_sandbox(rm):
    """The followers and spooled output this mount keeps of a session go when
    the session is removed, and within a second of its sandbox's removal:
    a mount that outlives many sandboxes keeps no file open for them."""
    pid = rm.proc.pid
    create_sandbox(rm, "gone")
    runs = rm.path("sandboxes", "gone", "runs")
    kept = {}
    for name in ("a", "b", "c"):
        before = spools(pid)
        os.mkdir(runs / name)
        assert run_cmd(runs / name, f"echo {name}; echo again-{name}") == (
            f"{name}\nagain-{name}\n", 0)
        mine = {fd: t for fd, t in spools(pid).items() if before.get(fd) != t}
        assert mine, f"no spool seen for session {name}"
        kept[name] = mine
    assert run_cmd(runs / "a", "echo second") == ("second\n", 0)
    os.rmdir(runs / "c")
    assert not still_open(pid, kept["c"])
    rm.sh("rmdir sandboxes/gone")
    assert not still_open(pid, {**kept["a"], **kept["b"]})


@bounded(90)
def test_a_stopping_sandbox_lists_no_session_never_eexist(rm):
    """ls runs/ while the sandbox stops: its sessions, or none; never an
    error that says something exists (the toolbox's 409 to a read)."""
    create_sandbox(rm, "stp")
    runs = rm.path("sandboxes", "stp", "runs")
    os.mkdir(runs / "x")
    seen, stop = [], threading.Event()

    def lister():
        while not stop.is_set():
            try:
                seen.append(tuple(os.listdir(runs)))
            except OSError as e:
                seen.append(errno.errorcode.get(e.errno, str(e.errno)))

    t = threading.Thread(target=lister, daemon=True)
    t.start()
    try:
        rm.write("sandboxes/stp/state", "stop\n")
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(30)
    assert rm.read("sandboxes", "stp", "state") == "stopped\n"
    assert os.listdir(runs) == []
    assert set(seen) <= {("x",), (), "ENOENT"}, sorted(set(map(str, seen)))
    rm.sh("rmdir sandboxes/stp")


# ---- faults (last: it kills the module's quaverd) ----------------------------------------


@bounded(90)
def test_quaverd_killed_during_a_command(rm, sess):
    with open(sess / "command", "w") as f:
        f.write("echo started; sleep 30; echo never")
    readers = [subprocess.Popen(["cat", str(sess / node)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for node in ("output", "exit")]
    time.sleep(1.0)
    rm.expect_fs_log(r"(?i)runs|refused|connect|EIO|unreachable")
    rm.qd.kill(signal.SIGKILL)
    t0 = time.monotonic()
    results = [r.communicate(timeout=10) + (r.returncode,) for r in readers]
    assert time.monotonic() - t0 < 5, results
    out, err, code = results[0]
    assert out.startswith(b"started\n") and b"never" not in out
    assert code != 0 and b"Input/output error" in err, results
    out, err, code = results[1]
    assert out == b"" and code != 0 and b"Input/output error" in err, results
    rm.qd.start()
