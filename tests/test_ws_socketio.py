"""quaverd websockets: the upgrade (auth, refusals as HTTP answers,
subprotocol echo), and the socket.io event stream the Daytona SDK opens
(../shared/daytona-api.md section 9.3, issue 6)."""

import json
import time

import pytest

from helpers.daytona import create_sandbox, wait_sandbox
from wsclient import Closed, HandshakeError, connect

SIO = "/api/socket.io/?EIO=4&transport=websocket&source=sdk-typescript&sdkVersion=0.218.0"


def sio_connect(q, token=None):
    ws = connect(q.port, SIO)
    opening = ws.recv_text()
    assert opening.startswith("0{"), opening
    info = json.loads(opening[1:])
    assert info["pingInterval"] == 25000 and info["upgrades"] == []
    ws.send_text("40" + json.dumps({"token": token if token is not None else q.token}))
    return ws, ws.recv_text()


def next_event(ws, name, deadline_s=10.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        msg = ws.recv_text()
        if msg == "2":
            ws.send_text("3")
            continue
        assert msg.startswith("42"), msg
        ev, payload = json.loads(msg[2:])
        if ev == name:
            return payload
    raise AssertionError(f"no {name} event in {deadline_s} s")


def test_socketio_handshake_and_connect(shared_quaverd):
    ws, reply = sio_connect(shared_quaverd)
    assert reply.startswith("40{") and json.loads(reply[2:])["sid"]
    ws.close()


def test_socketio_wrong_token_is_refused_in_the_packet(shared_quaverd):
    ws, reply = sio_connect(shared_quaverd, token="0" * 64)
    assert reply.startswith("44{"), reply
    assert "token" in json.loads(reply[2:])["message"]
    ws.close()


def test_socketio_needs_engine_io_4_websocket(shared_quaverd):
    with pytest.raises(HandshakeError) as e:
        connect(shared_quaverd.port, "/api/socket.io/?EIO=3&transport=websocket")
    assert e.value.status == 400


def test_state_events_follow_a_sandbox_through_stop(shared_quaverd):
    q = shared_quaverd
    ws, reply = sio_connect(q)
    assert reply.startswith("40")
    sb = create_sandbox(q)
    wait_sandbox(q, sb["id"], "started")
    q.ok("POST", f"/sandbox/{sb['id']}/stop")
    seen = []
    while not seen or seen[-1] != "stopped":
        p = next_event(ws, "sandbox.state.updated")
        if p["sandbox"]["id"] != sb["id"]:
            continue
        assert p["sandbox"]["state"] == p["newState"]
        assert p["sandbox"]["name"] == sb["name"]
        assert p["sandbox"]["toolboxProxyUrl"].endswith("/toolbox")
        seen.append(p["newState"])
    # creating -> started came first (the SDK's create waits on it), then the stop
    assert seen[0] == "started" and seen[-1] == "stopped", seen
    ws.close()


def test_a_client_that_did_not_connect_gets_no_events(shared_quaverd):
    q = shared_quaverd
    ws = connect(q.port, SIO)
    assert ws.recv_text().startswith("0{")
    sb = create_sandbox(q)
    wait_sandbox(q, sb["id"], "started")
    ws.sock.settimeout(1.0)
    with pytest.raises(TimeoutError):
        ws.recv()
    ws.close()


def test_upgrade_elsewhere_needs_the_token(shared_quaverd):
    with pytest.raises(HandshakeError) as e:
        connect(shared_quaverd.port, "/toolbox/x/process/pty/p/connect")
    assert e.value.status == 401
    body = json.loads(e.value.body)
    assert "Bearer" in body["message"]


def test_unknown_websocket_route_is_404(shared_quaverd):
    q = shared_quaverd
    with pytest.raises(HandshakeError) as e:
        connect(q.port, "/api/nothing-here", token=q.token)
    assert e.value.status == 404


def test_subprotocol_is_echoed(shared_quaverd):
    q = shared_quaverd
    for offered in (["X-Daytona-Pty-Exit-Control"],
                    ["X-Daytona-SDK-Version~0.218.0"],
                    ["X-Daytona-Pty-Envs~eyJBIjoiMSJ9", "X-Daytona-Pty-Exit-Control"]):
        ws = connect(q.port, SIO, protocols=offered)
        assert ws.protocol in offered
        assert ws.recv_text().startswith("0{")
        ws.close()


def test_pings_are_answered(shared_quaverd):
    ws = connect(shared_quaverd.port, SIO)
    assert ws.recv_text().startswith("0{")
    ws.ping(b"hello")
    op, data = ws.recv()
    assert (op, data) == (10, b"hello")
    ws.close()


def test_close_from_the_client_is_echoed(shared_quaverd):
    ws = connect(shared_quaverd.port, SIO)
    assert ws.recv_text().startswith("0{")
    ws.send_frame(8, (4000).to_bytes(2, "big") + b"bye")
    with pytest.raises(Closed) as e:
        while True:
            ws.recv()
    assert e.value.code == 4000
    ws.sock.close()
