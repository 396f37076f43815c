"""runs/ over a real mount on a real quaverd (issue 5, "Commands and code",
and the acceptance points on isolation, volumes and faults), driven from
plain shell commands as fs-layout.md's runs/ section promises:
`mkdir runs/S`, `echo CMD > runs/S/command`, `cat runs/S/output`,
`cat runs/S/exit`.
"""

import errno
import os
import select
import signal
import subprocess
import threading
import time

import pytest

from files_helpers import bounded, create_sandbox
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
    ids = os.listdir(sess / "commands")
    assert len(ids) == 2
    texts = {(sess / "commands" / i / "command").read_text(): i for i in ids}
    first = texts["echo first\n"]
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
