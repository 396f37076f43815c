"""Sessions over real HTTP (daytona-api.md 7.3): one long-lived shell per
session in the sandbox, so cwd and exported variables persist; sync and
async commands, their status and logs, stdin for async commands, delete."""

import json
import time
import uuid

import pytest

from test_runtime_process import (assert_daemon_error, host_pids_with_arg, new_box,
                                  raw_request, wait_until)


@pytest.fixture(scope="module")
def box(shared_quaverd):
    return new_box(shared_quaverd)


def new_session(box):
    sid = "s-" + uuid.uuid4().hex[:12]
    r = box.call("POST", "process/session", json={"sessionId": sid})
    assert r.status in (200, 201), r.data
    return sid


def exec_sync(box, sid, command, **body):
    r = box.call("POST", f"process/session/{sid}/exec", json={"command": command, **body})
    assert r.status == 200, r.data
    return r.data


def exec_async(box, sid, command):
    r = box.call("POST", f"process/session/{sid}/exec", json={"command": command,
                                                              "runAsync": True})
    assert r.status == 202, r.data
    assert set(r.data) == {"cmdId"}
    return r.data["cmdId"]


def status(box, sid, cid):
    r = box.call("GET", f"process/session/{sid}/command/{cid}")
    assert r.status == 200, r.data
    return r.data


def wait_done(box, sid, cid, timeout=10):
    return wait_until(f"command {cid} to finish",
                      lambda: (lambda s: s if "exitCode" in s else None)(status(box, sid, cid)),
                      timeout=timeout)


def test_create_list_get_delete(box):
    sid = new_session(box)
    listed = box.call("GET", "process/session").data
    assert any(s["sessionId"] == sid for s in listed), listed
    got = box.call("GET", f"process/session/{sid}").data
    assert got == {"sessionId": sid, "commands": []}
    assert_daemon_error(box.call("POST", "process/session", json={"sessionId": sid}), 409)
    r = box.call("DELETE", f"process/session/{sid}")
    assert r.status in (200, 204)
    assert_daemon_error(box.call("GET", f"process/session/{sid}"), 404)
    assert_daemon_error(box.call("DELETE", f"process/session/{sid}"), 404)
    assert_daemon_error(box.call("POST", f"process/session/{sid}/exec",
                                 json={"command": "true"}), 404)
    for bad in ({}, {"sessionId": ""}, {"sessionId": 5}, {"sessionId": "a/b"},
                {"sessionId": "x" * 200}):
        assert_daemon_error(box.call("POST", "process/session", json=bad), 400)


def test_cwd_and_variables_persist(box):
    sid = new_session(box)
    first = exec_sync(box, sid, "cd /tmp && export GREETING=hello; PLAIN=kept; mkdir -p d")
    assert first["exitCode"] == 0
    second = exec_sync(box, sid, 'pwd; echo "$GREETING $PLAIN"; cd d')
    assert second["stdout"] == "/tmp\nhello kept\n"
    assert exec_sync(box, sid, "pwd")["stdout"] == "/tmp/d\n"
    # An exported variable reaches child processes too.
    assert exec_sync(box, sid, "bash -c 'echo $GREETING'")["stdout"] == "hello\n"


def test_sync_exec_separates_stdout_and_stderr(box):
    sid = new_session(box)
    command = "echo out; echo err >&2; printf 'no newline'; exit_code=1; false"
    d = exec_sync(box, sid, command)
    assert d["stdout"] == "out\nno newline"
    assert d["stderr"] == "err\n"
    assert d["exitCode"] == 1
    assert sorted(d["output"]) == sorted("out\nerr\nno newline")
    assert set(d) == {"cmdId", "output", "stdout", "stderr", "exitCode"}
    # The command is in the session's list with its exit code.
    cmds = box.call("GET", f"process/session/{sid}").data["commands"]
    assert cmds[-1] == {"id": d["cmdId"], "command": command, "exitCode": 1}


def test_syntax_error_and_quotes_stay_inside_the_command(box):
    sid = new_session(box)
    d = exec_sync(box, sid, "echo 'unterminated")
    assert d["exitCode"] == 2 and d["stderr"], d
    d = exec_sync(box, sid, "echo \"it's\" 'a \"quote\"'; echo $((6*7))")
    assert d["stdout"] == "it's a \"quote\"\n42\n"
    d = exec_sync(box, sid, "for i in 1 2; do\n  echo line$i\ndone")
    assert d["stdout"] == "line1\nline2\n"


def test_async_command_status_and_logs(box):
    sid = new_session(box)
    cid = exec_async(box, sid, "echo first; echo oops >&2; sleep 1; echo second; exit 5")
    st = status(box, sid, cid)
    assert st["id"] == cid and "exitCode" not in st, st
    done = wait_done(box, sid, cid)
    assert done["exitCode"] == 5
    # SDK >= 0.167.0: JSON with the streams apart.
    r = box.call("GET", f"process/session/{sid}/command/{cid}/logs")
    assert r.status == 200
    assert r.data["stdout"] == "first\nsecond\n"
    assert r.data["stderr"] == "oops\n"
    assert set(r.data) == {"output", "stdout", "stderr"}
    # No version header: plain combined text.
    code, ctype, raw = raw_request(box.q, "GET", f"{box.base}/process/session/{sid}/command/"
                                   f"{cid}/logs")
    assert code == 200 and "json" not in ctype
    assert sorted(raw.decode()) == sorted("first\noops\nsecond\n")
    assert_daemon_error(box.call("GET", f"process/session/{sid}/command/nope"), 404)


def test_logs_of_a_running_command_grow(box):
    sid = new_session(box)
    cid = exec_async(box, sid, "for i in 1 2 3 4 5 6; do echo tick$i; sleep 0.3; done")
    seen = wait_until("the first lines", lambda: (lambda d: d if "tick2" in d["stdout"] else None)(
        box.call("GET", f"process/session/{sid}/command/{cid}/logs").data), timeout=5)
    assert "tick6" not in seen["stdout"]
    wait_done(box, sid, cid)
    final = box.call("GET", f"process/session/{sid}/command/{cid}/logs").data
    assert final["stdout"] == "".join(f"tick{i}\n" for i in range(1, 7))


def test_stdin_input_for_async_commands(box):
    sid = new_session(box)
    cid = exec_async(box, sid, 'read -r line; echo "got:$line"; read -r n; echo $((n * 2))')
    r = box.call("POST", f"process/session/{sid}/command/{cid}/input", json={"data": "hello\n"})
    assert r.status in (200, 204), r.data
    box.call("POST", f"process/session/{sid}/command/{cid}/input", json={"data": "21\n"})
    assert wait_done(box, sid, cid)["exitCode"] == 0
    logs = box.call("GET", f"process/session/{sid}/command/{cid}/logs").data
    assert logs["stdout"] == "got:hello\n42\n"
    # Finished: no more input.
    assert_daemon_error(box.call("POST", f"process/session/{sid}/command/{cid}/input",
                                 json={"data": "x\n"}), 410)
    # A sync command reads nothing (its stdin is empty).
    assert exec_sync(box, sid, "cat; echo after")["stdout"] == "after\n"


def test_commands_queue_in_one_shell(box):
    sid = new_session(box)
    slow = exec_async(box, sid, "sleep 0.5; export STEP=one")
    d = exec_sync(box, sid, "echo $STEP")  # runs after the async one, in the same shell
    assert d["stdout"] == "one\n"
    assert status(box, sid, slow)["exitCode"] == 0


def test_exit_ends_the_session(box):
    sid = new_session(box)
    d = exec_sync(box, sid, "exit 7")
    assert d["exitCode"] == 7
    assert_daemon_error(box.call("POST", f"process/session/{sid}/exec",
                                 json={"command": "true"}), 410, "SESSION_ENDED")
    assert box.call("DELETE", f"process/session/{sid}").status in (200, 204)


def test_delete_kills_the_session_processes(box):
    sid = new_session(box)
    tag = f"{2000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"
    cid = exec_async(box, sid, f"sleep {tag}")
    wait_until("the sleeper", lambda: host_pids_with_arg(tag), timeout=5)
    assert box.call("DELETE", f"process/session/{sid}").status in (200, 204)
    wait_until("the sleeper to die", lambda: not host_pids_with_arg(tag), timeout=5)
    del cid


def test_session_output_of_several_megabytes(box):
    sid = new_session(box)
    d = exec_sync(box, sid, "head -c 5000000 /dev/zero | tr '\\0' 'z'; head -c 1000 /dev/zero "
                            "| tr '\\0' 'e' >&2")
    assert d["stdout"] == "z" * 5_000_000
    assert d["stderr"] == "e" * 1000


def test_exec_validation(box):
    sid = new_session(box)
    for body in ({}, {"command": ""}, {"command": 3}):
        assert_daemon_error(box.call("POST", f"process/session/{sid}/exec", json=body), 400)
    d = exec_sync(box, sid, "echo legacy", suppressInputEcho=True)
    assert d["stdout"] == "legacy\n"
    r = box.call("POST", f"process/session/{sid}/exec", json={"command": "true", "async": True})
    assert r.status == 202  # the legacy alias of runAsync


def test_sessions_end_when_the_sandbox_stops(shared_quaverd):
    b = new_box(shared_quaverd)
    sid = new_session(b)
    cid = exec_async(b, sid, "sleep 600")
    b.stop()
    b.start()
    assert_daemon_error(b.call("GET", f"process/session/{sid}"), 404)
    assert b.call("GET", "process/session").data == []
    del cid
