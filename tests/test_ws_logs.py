"""Following a session command's logs over a websocket (../shared/daytona-api.md
section 7.3): 01 01 01 / 02 02 02 framing, closed with 1000 when it ends."""

import time

import pytest

from helpers.daytona import create_sandbox, wait_sandbox
from wsclient import Closed, HandshakeError, connect


@pytest.fixture(scope="module")
def sandbox(shared_quaverd):
    sb = create_sandbox(shared_quaverd)
    wait_sandbox(shared_quaverd, sb["id"], "started")
    return sb["id"]


def demux(data):
    """Splits the stream at the markers into (stdout, stderr)."""
    out, err, cur, i = b"", b"", None, 0
    while i < len(data):
        if data[i:i + 3] in (b"\x01\x01\x01", b"\x02\x02\x02"):
            cur = data[i]
            i += 3
            continue
        if cur == 1:
            out += data[i:i + 1]
        elif cur == 2:
            err += data[i:i + 1]
        i += 1
    return out, err


def test_follow_streams_while_running_and_closes_1000(shared_quaverd, sandbox):
    q = shared_quaverd
    base = f"/toolbox/{sandbox}/process/session"
    assert q.request_path("POST", base, json={"sessionId": "s1"})[0] in (200, 201)
    status, data = q.request_path(
        "POST", f"{base}/s1/exec",
        json={"command": "echo one; echo oops >&2; sleep 1; echo two", "runAsync": True})
    assert status in (200, 202), data
    cid = data["cmdId"]
    start = time.monotonic()
    ws = connect(q.port, f"{base}/s1/command/{cid}/logs?follow=true", token=q.token)
    stream, first_at = b"", None
    with pytest.raises(Closed) as e:
        while True:
            op, chunk = ws.recv()
            assert op == 2
            stream += chunk
            if first_at is None and b"one" in stream:
                first_at = time.monotonic() - start
    assert e.value.code == 1000
    out, err = demux(stream)
    assert out == b"one\ntwo\n" and err == b"oops\n"
    assert first_at is not None and first_at < 0.9  # streamed, not at the end
    # a finished command: everything at once, then 1000
    ws = connect(q.port, f"{base}/s1/command/{cid}/logs?follow=true", token=q.token)
    stream = b""
    with pytest.raises(Closed) as e:
        while True:
            stream += ws.recv()[1]
    assert e.value.code == 1000 and demux(stream) == (b"one\ntwo\n", b"oops\n")


def test_unknown_command_is_404_before_the_upgrade(shared_quaverd, sandbox):
    q = shared_quaverd
    base = f"/toolbox/{sandbox}/process/session"
    assert q.request_path("POST", base, json={"sessionId": "s2"})[0] in (200, 201)
    with pytest.raises(HandshakeError) as e:
        connect(q.port, f"{base}/s2/command/nope/logs?follow=true", token=q.token)
    assert e.value.status == 404
    with pytest.raises(HandshakeError) as e:
        connect(q.port, f"{base}/nosuch/command/nope/logs?follow=true", token=q.token)
    assert e.value.status == 404
