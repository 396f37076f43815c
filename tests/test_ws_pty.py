"""Terminals in quaverd sandboxes: the PTY REST routes and websockets
(../shared/daytona-api.md section 7.4, issue 5), through a stdlib client."""

import base64
import json
import re
import threading
import time

import pytest

from helpers.daytona import create_sandbox, wait_sandbox
from wsclient import Closed, HandshakeError, connect

EXIT_CONTROL = "X-Daytona-Pty-Exit-Control"


@pytest.fixture(scope="module")
def sandbox(shared_quaverd):
    sb = create_sandbox(shared_quaverd)
    wait_sandbox(shared_quaverd, sb["id"], "started")
    return sb["id"]


def tb(sid, rest):
    return f"/toolbox/{sid}/{rest}"


def toolbox(q, method, sid, rest, **kw):
    return q.request_path(method, tb(sid, rest), **kw)


class Term:
    """One attached client: collects output in the background."""

    def __init__(self, q, path, protocols=(EXIT_CONTROL,), read=True, rcvbuf=None):
        self.ws = connect(q.port, path, token=q.token, protocols=list(protocols),
                          rcvbuf=rcvbuf)
        first = self.ws.recv_text()
        assert json.loads(first) == {"type": "control", "status": "connected"}, first
        self.out = bytearray()
        self.mark = 0
        self.controls = []
        self.closed = None
        self.cond = threading.Condition()
        if read:
            self.thread = threading.Thread(target=self._pump, daemon=True)
            self.thread.start()

    def _pump(self):
        try:
            while True:
                op, data = self.ws.recv()
                with self.cond:
                    if op == 2:
                        self.out += data
                    elif op == 1:
                        msg = json.loads(data)
                        if msg.get("type") == "control":
                            self.controls.append(msg)
                        else:
                            self.out += data
                    self.cond.notify_all()
        except Closed as e:
            with self.cond:
                self.closed = (e.code, e.reason)
                self.cond.notify_all()
        except OSError:
            with self.cond:
                self.closed = (None, "")
                self.cond.notify_all()

    def type(self, text):
        self.ws.send_binary(text.encode() if isinstance(text, str) else text)

    def wait_output(self, pattern, timeout=10.0):
        """Waits for @pattern in the output since the last match (searched incrementally)."""
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        end = time.monotonic() + timeout
        pos = self.mark
        with self.cond:
            while True:
                m = rx.search(self.out, pos)
                if m:
                    self.mark = m.end()
                    return m
                pos = max(self.mark, len(self.out) - 4096)
                left = end - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError(f"no {pattern!r} in output: {bytes(self.out)[-500:]!r}")
                self.cond.wait(left)

    def wait_closed(self, timeout=10.0):
        end = time.monotonic() + timeout
        with self.cond:
            while self.closed is None:
                left = end - time.monotonic()
                assert left > 0, "the websocket was not closed"
                self.cond.wait(left)
            return self.closed


def test_create_connect_echo_and_exit_code(shared_quaverd, sandbox):
    q = shared_quaverd
    t = Term(q, tb(sandbox, "process/pty/create-connect?id=p1&cols=80&rows=24"))
    assert t.ws.protocol == EXIT_CONTROL
    t.type("echo $((6*7))\r")
    t.wait_output(r"[\r\n]42\r\n")
    t.type("exit 5\r")
    code, reason = t.wait_closed()
    assert code == 1011
    assert json.loads(reason)["exitCode"] == 5
    assert {"type": "control", "status": "exited", "exitCode": 5,
            "exitReason": "non-zero exit"} in t.controls
    # single-use: gone once the shell exited
    assert toolbox(q, "GET", sandbox, "process/pty/p1")[0] == 404


def test_clean_exit_closes_1000(shared_quaverd, sandbox):
    t = Term(shared_quaverd, tb(sandbox, "process/pty/create-connect?id=p0"))
    t.type("exit\r")
    code, reason = t.wait_closed()
    assert code == 1000 and json.loads(reason) == {"exitCode": 0}


def test_rest_create_list_resize_and_stty(shared_quaverd, sandbox):
    q = shared_quaverd
    status, data = toolbox(q, "POST", sandbox, "process/pty",
                           json={"id": "p2", "cols": 100, "rows": 30, "envs": {"GREETING": "hej"}})
    assert status == 201 and data == {"sessionId": "p2"}
    assert toolbox(q, "POST", sandbox, "process/pty", json={"id": "p2"})[0] == 409
    status, data = toolbox(q, "GET", sandbox, "process/pty")
    assert "p2" in [s["id"] for s in data["sessions"]]
    status, info = toolbox(q, "GET", sandbox, "process/pty/p2")
    assert info["cols"] == 100 and info["rows"] == 30 and info["active"] is True
    t = Term(q, tb(sandbox, "process/pty/p2/connect"))
    t.type("stty size; echo $GREETING-$TERM; id -un\r")
    t.wait_output(r"30 100\r\n")
    t.wait_output(r"hej-xterm-256color\r\n")
    status, info = toolbox(q, "POST", sandbox, "process/pty/p2/resize",
                           json={"cols": 132, "rows": 43})
    assert status == 200 and info["cols"] == 132 and info["rows"] == 43
    t.type("stty size\r")
    t.wait_output(r"43 132\r\n")
    assert toolbox(q, "POST", sandbox, "process/pty/p2/resize",
                   json={"cols": 1001, "rows": 43})[0] == 400
    status, data = toolbox(q, "DELETE", sandbox, "process/pty/p2")
    assert status == 200
    code, reason = t.wait_closed()
    assert code == 1011 and json.loads(reason)["exitCode"] == 137


def test_ctrl_c_interrupts(shared_quaverd, sandbox):
    t = Term(shared_quaverd, tb(sandbox, "process/pty/create-connect?id=p3"))
    t.type("sleep 100; echo after-$?\r")
    time.sleep(0.5)
    start = time.monotonic()
    t.type(b"\x03")
    t.type("echo alive\r")
    t.wait_output(r"[\r\n]alive\r\n")
    assert time.monotonic() - start < 5
    t.type("exit\r")
    t.wait_closed()


def test_two_clients_see_the_same_output(shared_quaverd, sandbox):
    q = shared_quaverd
    assert toolbox(q, "POST", sandbox, "process/pty", json={"id": "p4"})[0] == 201
    a = Term(q, tb(sandbox, "process/pty/p4/connect"))
    b = Term(q, tb(sandbox, "process/pty/p4/connect"), protocols=())
    assert b.ws.protocol is None
    a.type("echo sh$((1+1))red\r")
    a.wait_output(r"sh2red")
    b.wait_output(r"sh2red")
    b.type("exit 3\r")
    assert a.wait_closed()[0] == 1011 and b.wait_closed()[0] == 1011


def test_slow_consumer_is_closed_others_go_on(shared_quaverd, sandbox):
    q = shared_quaverd
    assert toolbox(q, "POST", sandbox, "process/pty", json={"id": "p5"})[0] == 201
    fast = Term(q, tb(sandbox, "process/pty/p5/connect"))
    # one that does not read, with a small receive window: ~21 MB of output is
    # far more than its 256 queued messages (of up to 32 KiB: 8 MiB) and the
    # socket buffers hold
    slow = Term(q, tb(sandbox, "process/pty/p5/connect"), read=False, rcvbuf=4096)
    fast.type("yes line | head -n 3500000; echo done-$((40+2))\r")
    fast.wait_output(r"done-42\r\n", timeout=120)
    # the slow one was closed with 1008; drain it to see the close frame
    slow.ws.sock.settimeout(10)
    code = None
    try:
        while True:
            slow.ws.recv()
    except Closed as e:
        code, reason = e.code, e.reason
    assert reason == "slow consumer"
    assert code == 1008, code
    fast.type("echo still-$((2*3))\r")
    fast.wait_output(r"still-6")
    toolbox(q, "DELETE", sandbox, "process/pty/p5")


def test_refusals_before_the_upgrade(shared_quaverd, sandbox):
    q = shared_quaverd
    with pytest.raises(HandshakeError) as e:
        connect(q.port, tb(sandbox, "process/pty/nope/connect"), token=q.token)
    assert e.value.status == 404
    with pytest.raises(HandshakeError) as e:
        connect(q.port, tb(sandbox, "process/pty/create-connect?id=x&cols=2000"), token=q.token)
    assert e.value.status == 400
    with pytest.raises(HandshakeError) as e:
        connect(q.port, tb(sandbox, "process/pty/create-connect?id=x"))
    assert e.value.status == 401
    assert toolbox(q, "POST", sandbox, "process/pty", json={"id": "p6"})[0] == 201
    with pytest.raises(HandshakeError) as e:
        connect(q.port, tb(sandbox, "process/pty/create-connect?id=p6"), token=q.token)
    assert e.value.status == 409
    toolbox(q, "DELETE", sandbox, "process/pty/p6")


def test_envs_subprotocol(shared_quaverd, sandbox):
    envs = base64.urlsafe_b64encode(json.dumps({"ZZ": "yy"}).encode()).decode().rstrip("=")
    t = Term(shared_quaverd, tb(sandbox, "process/pty/create-connect?id=p7"),
             protocols=(f"X-Daytona-Pty-Envs~{envs}", EXIT_CONTROL))
    assert t.ws.protocol == EXIT_CONTROL
    t.type("echo z-$ZZ\r")
    t.wait_output(r"z-yy\r\n")
    t.type("exit\r")
    t.wait_closed()


def test_envs_subprotocol_over_the_lws_limits(shared_quaverd, sandbox):
    """libwebsockets 4.1 gives up on an offered token over 63 characters and on
    a list over 126 bytes; quaverd serves them all the same (the SDK sends
    the envs first, base64url in one token)."""
    envs = {"LONG_ONE": "v" * 300, "SECOND": "two words"}
    token = base64.urlsafe_b64encode(json.dumps(envs).encode()).decode().rstrip("=")
    assert len(token) > 400
    t = Term(shared_quaverd, tb(sandbox, "process/pty/create-connect?id=p8"),
             protocols=(f"X-Daytona-Pty-Envs~{token}", "other-a", "other-b", EXIT_CONTROL))
    assert t.ws.protocol == EXIT_CONTROL
    t.type("echo n=${#LONG_ONE} s=$SECOND\r")
    t.wait_output(r"n=300 s=two words\r\n")
    info = toolbox(shared_quaverd, "GET", sandbox, "process/pty/p8")
    assert info[0] == 200 and info[1]["envs"] == envs
    t.type("exit\r")
    assert t.wait_closed()[0] == 1000
    # a long list without a token quaverd echoes: the first offered one, if it can be echoed
    t2 = Term(shared_quaverd, tb(sandbox, "process/pty/create-connect?id=p9"),
              protocols=("short-one", "y" * 70, "z" * 70))
    assert t2.ws.protocol == "short-one"
    t2.type("exit\r")
    t2.wait_closed()


def test_kill_right_after_the_start_ends_the_shell(shared_quaverd, sandbox):
    """DELETE at once after create-connect (the shell not yet in its own process
    group or session): the clients still get exit 137 and the close."""
    q = shared_quaverd
    for i in range(15):
        t = Term(q, tb(sandbox, f"process/pty/create-connect?id=k{i}"))
        assert toolbox(q, "DELETE", sandbox, f"process/pty/k{i}")[0] == 200
        code, reason = t.wait_closed(timeout=5)
        assert (code, json.loads(reason)) == (1011, {"exitCode": 137, "exitReason": "SIGKILL"})
        assert {"type": "control", "status": "exited", "exitCode": 137,
                "exitReason": "SIGKILL"} in t.controls
        assert toolbox(q, "GET", sandbox, f"process/pty/k{i}")[0] == 404


def test_quaverd_stops_cleanly_with_a_busy_terminal(quaverd):
    """SIGTERM while a shell floods two clients: quaverd exits 0 (the fixture
    checks) and the clients see the connection end."""
    q = quaverd
    sb = create_sandbox(q)
    wait_sandbox(q, sb["id"], "started")
    a = Term(q, tb(sb["id"], "process/pty/create-connect?id=busy"))
    b = Term(q, tb(sb["id"], "process/pty/busy/connect"), read=False)
    a.type("yes flood\r")
    a.wait_output(r"flood\r\nflood")
    q.stop()
    a.wait_closed(timeout=15)
    b.ws.sock.close()
