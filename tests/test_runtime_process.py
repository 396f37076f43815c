"""quaverd's process API over real HTTP (daytona-api.md 7.1, 7.2, 7.6):
POST /process/execute, /process/code-run and /env run real processes in a
sandbox's bubblewrap namespaces (doc/quaverd.md "Runtime and processes").

The helpers at the top are shared by the other test_runtime_*.py suites."""

import http.client
import json
import os
import time
import uuid

import pytest

from helpers.daytona import create_sandbox, unique, wait_sandbox


# ---- helpers (also imported by test_runtime_session.py and test_runtime_isolation.py) ----


class Box:
    """One sandbox and its toolbox base ({toolboxProxyUrl}/{id})."""

    def __init__(self, q, dto):
        self.q = q
        self.dto = dto
        self.id = dto["id"]
        self.name = dto["name"]
        base = dto["toolboxProxyUrl"].rstrip("/")
        self.base = base[base.index("/toolbox"):] + "/" + self.id

    def call(self, method, route, json=None, headers=None, timeout=120, **kw):
        return self.q.request_path(method, f"{self.base}/{route}", json=json, headers=headers,
                                   timeout=timeout, **kw)

    def execute(self, command, **body):
        return self.call("POST", "process/execute", json={"command": command, **body})

    def run(self, command, **body):
        """execute that must answer 200; returns (exitCode, result)."""
        r = self.execute(command, **body)
        assert r.status == 200, f"{command!r}: {r.status} {r.data!r}"[:2000]
        return r.data["exitCode"], r.data["result"]

    def out(self, command, **body):
        """The result of a command that must exit 0."""
        code, result = self.run(command, **body)
        assert code == 0, f"{command!r} exited {code}: {result[:2000]!r}"
        return result

    def code_run(self, code, **body):
        return self.call("POST", "process/code-run", json={"code": code, **body})

    def pid_namespace(self):
        """'pid:[N]': the sandbox's pid namespace as the host names it too."""
        return self.out("readlink /proc/self/ns/pid").strip()

    def stop(self):
        self.q.ok("POST", f"/sandbox/{self.id}/stop")
        wait_sandbox(self.q, self.id, "stopped")

    def start(self):
        self.q.ok("POST", f"/sandbox/{self.id}/start")
        wait_sandbox(self.q, self.id, "started")


def new_box(q, **body):
    body.setdefault("name", unique("rt"))
    return Box(q, create_sandbox(q, **body))


def assert_daemon_error(resp, status, code=None):
    assert resp.status == status, f"expected {status}, got {resp.status}: {resp.data!r}"
    body = resp.data
    assert isinstance(body, dict), body
    for key in ("statusCode", "message", "code", "timestamp", "path", "method"):
        assert key in body, f"{key} missing from {body}"
    if code:
        assert body["code"] == code, body
    return body


def host_pids_in_namespace(ns):
    """Host pids of every process whose pid namespace is @ns ('pid:[N]')."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                pids.append(int(entry))
        except OSError:
            pass
    return pids


def _start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def host_processes_in_namespace(ns):
    """{host pid: start time} of the processes in pid namespace @ns. Namespace ids
    are reused once freed, so compare these snapshots, not the id, after a stop."""
    return {pid: t for pid in host_pids_in_namespace(ns)
            if (t := _start_time(pid)) is not None}


def still_alive(snapshot):
    """The processes of an earlier snapshot that still exist (same pid, same start)."""
    return [pid for pid, t in snapshot.items() if _start_time(pid) == t]


def host_pids_with_arg(arg):
    """Host pids whose command line contains the argument @arg."""
    pids = []
    want = arg.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if want in f.read().split(b"\0"):
                    pids.append(int(entry))
        except OSError:
            pass
    return pids


def wait_until(what, probe, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def raw_request(q, method, path, body=None, headers=None):
    """A request with exactly these headers (plus auth): no SDK version header."""
    conn = http.client.HTTPConnection(q.host, q.port, timeout=60)
    try:
        hdrs = {"Authorization": "Bearer " + q.token}
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


# ---- execute ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def box(shared_quaverd):
    return new_box(shared_quaverd)


def test_echo_hi(box):
    r = box.execute("echo hi")
    assert r.status == 200
    assert r.data == {"exitCode": 0, "result": "hi\n"}


def test_exit_code(box):
    assert box.run("exit 3") == (3, "")


def test_stdout_and_stderr_both_captured_in_order(box):
    code, result = box.run("echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 1")
    assert code == 1
    assert result == "out1\nerr1\nout2\nerr2\n"


def test_user_home_and_defaults(box):
    result = box.out('id -un; id -u; id -g; pwd; echo "$HOME $USER $LANG"; hostname')
    assert result.splitlines() == ["daytona", "1000", "1000", "/home/daytona",
                                   "/home/daytona daytona C.UTF-8", box.name]


def test_cwd_and_envs(box):
    result = box.out('pwd; echo "$A|$B"', cwd="/tmp", envs={"A": "b c", "B": "x=y"})
    assert result == "/tmp\nb c|x=y\n"


def test_missing_cwd_is_exit_minus_one_with_the_reason(box):
    code, result = box.run("pwd", cwd="/no/such/dir")
    assert code == -1
    assert "/no/such/dir" in result and "No such file" in result


def test_empty_command_and_invalid_env_keys_are_400(box):
    for body in ({"command": ""}, {"command": "   "}, {},
                 {"command": "true", "envs": {"A=B": "x"}},
                 {"command": "true", "envs": {"": "x"}},
                 {"command": "true", "envs": {"A": 1}},
                 {"command": "true", "timeout": -1},
                 {"command": "true", "cwd": 5}):
        r = box.call("POST", "process/execute", json=body)
        assert_daemon_error(r, 400)
    r = box.call("POST", "process/execute", body=b"not json")
    assert_daemon_error(r, 400)


def test_timeout_is_408_and_kills_the_group(box):
    tag = f"{1000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"
    started = time.monotonic()
    r = box.execute(f"sleep {tag} & sleep {tag}; echo never", timeout=1)
    assert_daemon_error(r, 408, "PROCESS_EXECUTION_TIMEOUT")
    assert time.monotonic() - started < 5
    # Both sleepers (the foreground one and the background job) are gone.
    wait_until("the timed-out group to die", lambda: not host_pids_with_arg(tag), timeout=3)
    assert box.out("echo still fine") == "still fine\n"


def test_50_mb_of_output_arrives_whole(box):
    size = 50_000_000
    r = box.execute(f"head -c {size} /dev/zero | tr '\\0' 'x'; echo; echo end >&2")
    assert r.status == 200
    result = r.data["result"]
    assert len(result) == size + len("\nend\n")
    assert result.startswith("x" * 1000) and result.endswith("x\nend\n")
    assert result.count("x") == size


def test_output_beyond_64_mib_is_truncated_with_a_note(box):
    limit = 64 << 20
    r = box.execute(f"head -c {limit + 1_000_000} /dev/zero | tr '\\0' 'y'; echo done")
    assert r.status == 200 and r.data["exitCode"] == 0
    result = r.data["result"]
    assert result[:limit] == "y" * limit
    assert "output truncated" in result[limit:]
    assert len(result) < limit + 200


def test_utf8_and_binary_output(box):
    code, result = box.run("printf 'caf\\303\\251 \\377\\n'")
    assert code == 0
    assert result == "café \ufffd\n"  # invalid UTF-8 becomes U+FFFD, as Go's encoder


def test_stdin_is_empty(box):
    assert box.out("cat; echo eof") == "eof\n"


# ---- code-run -----------------------------------------------------------------------


@pytest.mark.parametrize("language,code", [
    ("python", "import sys\nprint(6 * 7, sys.argv[1:])"),
    ("javascript", "console.log(6 * 7, process.argv.slice(1))"),
    ("typescript", "const n: number = 6 * 7;\nconsole.log(n, process.argv.slice(2));"),
])
def test_code_run_languages(box, language, code):
    r = box.code_run(code, language=language, argv=["a", "b c"])
    assert r.status == 200, r.data
    assert r.data["exitCode"] == 0, r.data
    out = r.data["result"]
    assert out.startswith("42 "), out
    assert "'a'" in out and "'b c'" in out, out


@pytest.mark.parametrize("language,code,needle", [
    ("python", "print(", "SyntaxError"),
    ("javascript", "console.log(", "SyntaxError"),
    ("typescript", "let x: number = ;\nconsole.log(x)", "error TS"),
])
def test_code_run_syntax_error(box, language, code, needle):
    r = box.code_run(code, language=language)
    assert r.status == 200
    assert r.data["exitCode"] != 0
    assert needle in r.data["result"], r.data


def test_code_run_typescript_type_errors_do_not_stop_it(box):
    # ts-node -T semantics (what Daytona runs): types are not checked.
    r = box.code_run("const s: number = 'text' as any as string as any;\nconsole.log(typeof s)",
                     language="typescript")
    assert r.data == {"exitCode": 0, "result": "string\n"}


def test_code_run_runtime_error_and_exit_code(box):
    r = box.code_run("import sys\nprint('before')\nsys.exit(4)", language="python")
    assert r.data == {"exitCode": 4, "result": "before\n"}
    r = box.code_run("throw new Error('boom')", language="javascript")
    assert r.data["exitCode"] == 1 and "boom" in r.data["result"]


def test_code_run_language_from_the_label(shared_quaverd):
    js = new_box(shared_quaverd, labels={"code-toolbox-language": "javascript"})
    r = js.code_run("console.log([1, 2, 3].map(x => x * 2).join(','))")
    assert r.data == {"exitCode": 0, "result": "2,4,6\n"}


def test_code_run_envs_timeout_and_unknown_language(box):
    r = box.code_run("import os; print(os.environ['GREETING'])", language="python",
                     envs={"GREETING": "hello"})
    assert r.data == {"exitCode": 0, "result": "hello\n"}
    assert_daemon_error(box.code_run("import time; time.sleep(30)", language="python",
                                     timeout=1), 408, "PROCESS_EXECUTION_TIMEOUT")
    assert_daemon_error(box.code_run("x", language="cobol"), 400)
    assert_daemon_error(box.code_run("x", language="python", argv="nope"), 400)


def test_code_run_large_program(box):
    lines = [f"v{i} = {i}" for i in range(20000)] + ["print(v19999)"]
    r = box.code_run("\n".join(lines), language="python")
    assert r.data == {"exitCode": 0, "result": "19999\n"}


# ---- environment ----------------------------------------------------------------------


def test_env_at_create_and_post_env_for_later_processes(shared_quaverd):
    b = new_box(shared_quaverd, env={"FROM_CREATE": "1", "DROP_ME": "x"})
    assert b.out('echo "$FROM_CREATE|$DROP_ME"') == "1|x\n"
    r = b.call("POST", "env", json={"set": {"LATER": "yes", "FROM_CREATE": "2"},
                                   "unset": ["DROP_ME"]})
    assert r.status in (200, 204), r.data
    assert b.out('echo "$LATER|$FROM_CREATE|${DROP_ME-unset}"') == "yes|2|unset\n"
    # Per-call envs still win.
    assert b.out('echo "$LATER"', envs={"LATER": "call"}) == "call\n"
    for body in ({"set": {"A=B": "x"}}, {"set": {"A": 1}}, {"unset": "A"}, {"unset": ["A=B"]}):
        assert_daemon_error(b.call("POST", "env", json=body), 400)
    # A restart of the sandbox starts from the sandbox's env again (the daemon's env is reset).
    b.stop()
    b.start()
    assert b.out('echo "${LATER-none}|$FROM_CREATE|$DROP_ME"') == "none|1|x\n"


def test_process_routes_need_a_started_sandbox(shared_quaverd):
    b = new_box(shared_quaverd)
    b.stop()
    assert_daemon_error(b.execute("true"), 409)
    assert_daemon_error(b.code_run("print(1)", language="python"), 409)
    unknown = Box(shared_quaverd, {**b.dto, "id": "00000000-0000-4000-8000-000000000000"})
    assert_daemon_error(unknown.execute("true"), 404)
    b.start()
    assert b.out("echo back") == "back\n"
    assert_daemon_error(b.call("GET", "process/execute"), 404)
    assert_daemon_error(b.call("POST", "process/nothing", json={}), 404)


def test_every_call_counts_as_activity(make_quaverd):
    q = make_quaverd("--clock-scale", "60")  # one minute lasts one second
    b = new_box(q, autoStopInterval=1)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert b.out("true") == ""
        time.sleep(0.2)
    assert q.ok("GET", f"/sandbox/{b.id}")["state"] == "started"


def test_stop_ends_a_running_execute(shared_quaverd):
    import threading
    b = new_box(shared_quaverd)
    answers = []
    worker = threading.Thread(target=lambda: answers.append(b.execute("echo started; sleep 60")))
    worker.start()
    wait_until("the command to run", lambda: "sleep 60" in b.out("ps -eo args="), timeout=5)
    started = time.monotonic()
    b.stop()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert time.monotonic() - started < 5
    r = answers[0]
    assert r.status == 200 and r.data["exitCode"] == 128 + 9, r.data
    assert r.data["result"] == "started\n"
