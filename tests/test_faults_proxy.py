"""tests/helpers/faultproxy.py itself: each fault does on the wire what the
fault suites rely on, against a small stdlib HTTP server (so that a fault
test that passes does so because quaverfs coped, not because nothing was
injected)."""

import http.client
import http.server
import json
import socket
import threading
import time

import pytest

from helpers.faultproxy import FaultProxy


class Upstream(http.server.ThreadingHTTPServer):
    daemon_threads = True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits = []

    def log_message(self, *args):
        pass

    def _answer(self, body, ctype="application/json"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        Handler.hits.append(("GET", self.path))
        if self.path.startswith("/bin"):
            self._answer(b"\x00" * 10000, "application/octet-stream")
        else:
            port = self.server.server_address[1]
            self._answer(json.dumps({"toolboxProxyUrl": f"http://127.0.0.1:{port}/toolbox",
                                     "pad": "x" * 1000}).encode())

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Handler.hits.append(("POST", self.path, len(body)))
        self._answer(json.dumps({"got": len(body)}).encode())


@pytest.fixture
def px():
    up = Upstream(("127.0.0.1", 0), Handler)
    threading.Thread(target=up.serve_forever, daemon=True).start()
    Handler.hits = []
    proxy = FaultProxy(up.server_address[1]).start()
    yield proxy
    proxy.close()
    up.shutdown()
    up.server_close()


def get(px, path, method="GET", body=None, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", px.port, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def test_carries_and_rewrites_the_origin(px):
    status, body, _ = get(px, "/api/sandbox/x")
    assert status == 200
    assert json.loads(body)["toolboxProxyUrl"] == f"http://127.0.0.1:{px.port}/toolbox"
    status, body, _ = get(px, "/bin/file")
    assert status == 200 and body == b"\x00" * 10000
    status, body, _ = get(px, "/toolbox/u", "POST", b"y" * 300000)
    assert status == 200 and json.loads(body) == {"got": 300000}


def test_answers_and_counts(px):
    px.add("status", path="^/api/", times=1, code=503, retry_after=2)
    status, body, headers = get(px, "/api/a")
    assert status == 503 and headers.get("Retry-After") == "2"
    assert get(px, "/api/a")[0] == 200  # times=1
    assert Handler.hits == [("GET", "/api/a")]  # the 503 never reached the server
    px.add("status", method="POST", code=500, forward=True)
    assert get(px, "/api/p", "POST", b"z")[0] == 500
    assert Handler.hits[-1] == ("POST", "/api/p", 1)  # done, then refused
    px.add("malformed", path="^/api/m")
    with pytest.raises(ValueError):
        json.loads(get(px, "/api/m")[1])
    assert get(px, "/bin/m")[1] == b"\x00" * 10000  # file content passes
    assert px.hits("status") == 2 and px.hits("malformed") == 1


def test_cuts(px):
    px.add("truncate", path="^/api/t")
    with pytest.raises(http.client.IncompleteRead):
        get(px, "/api/t")
    px.add("reset", path="^/bin/r", at=100)
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        get(px, "/bin/r")
    px.add("reset_request", method="POST", at=1000)
    with pytest.raises((ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
        get(px, "/toolbox/u", "POST", b"y" * 300000)
    assert not any(h[0] == "POST" for h in Handler.hits), "a cut upload reached the server"


def test_delay_stall_refuse_and_upstream_down(px):
    px.add("delay", path="^/api/d", ms=300)
    t0 = time.monotonic()
    assert get(px, "/api/d")[0] == 200 and time.monotonic() - t0 >= 0.3
    px.latency_ms = 200
    t0 = time.monotonic()
    assert get(px, "/api/l")[0] == 200 and time.monotonic() - t0 >= 0.2
    px.latency_ms = 0

    px.add("stall", path="^/api/s")
    with pytest.raises(socket.timeout):
        get(px, "/api/s", timeout=0.5)
    assert ("GET", "/api/s") not in Handler.hits
    px.clear()
    assert get(px, "/api/s")[0] == 200

    px.refuse()
    with pytest.raises(ConnectionRefusedError):
        get(px, "/api/r")
    px.accept()
    assert get(px, "/api/r")[0] == 200

    px.upstream = ("127.0.0.1", 1)  # nothing listens there: quaverd is down
    status, body, _ = get(px, "/api/x")
    assert status == 502 and b"not reachable" in body
