"""quaverd's HTTP behaviour as clients meet it (doc/quaverd.md "HTTP limits"
and "Concurrency"): keep-alive, many clients at once, slow and oversized
clients that must not hold up the others, reads that do not wait for jobs."""

import http.client
import socket
import threading
import time

from helpers.daytona import (assert_daytona_error, create_sandbox, get_sandbox, wait_for,
                             wait_sandbox)


def test_keep_alive_serves_many_requests_on_one_connection(shared_quaverd):
    q = shared_quaverd
    conn = http.client.HTTPConnection(q.host, q.port, timeout=10)
    try:
        conn.connect()
        sock = conn.sock
        for _ in range(5):
            conn.request("GET", q.api_path + "/sandbox",
                         headers={"Authorization": "Bearer " + q.token})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            assert conn.sock is sock, "the connection was not kept alive"
        conn.request("POST", q.api_path + "/volumes", body=b'{"name": "ka-vol"}',
                     headers={"Authorization": "Bearer " + q.token,
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        conn.request("GET", q.api_path + "/volumes/by-name/ka-vol",
                     headers={"Authorization": "Bearer " + q.token})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    finally:
        conn.close()


def test_expect_100_continue_is_answered(shared_quaverd):
    """curl sends "Expect: 100-continue" with bodies over 1 KiB."""
    q = shared_quaverd
    body = b'{"env": {}, "labels": {"pad": "' + b"p" * 4000 + b'"}}'
    with socket.create_connection((q.host, q.port), timeout=10) as s:
        s.sendall(b"POST " + q.api_path.encode() + b"/sandbox HTTP/1.1\r\n"
                  b"Host: 127.0.0.1\r\nAuthorization: Bearer " + q.token.encode() + b"\r\n"
                  b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        t0 = time.monotonic()
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 100"), first[:80]
        assert time.monotonic() - t0 < 0.9, "100 Continue came late"
        s.sendall(body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        assert data.split(b"\r\n")[0].startswith(b"HTTP/1.1 200"), data[:200]


def test_many_clients_at_once(shared_quaverd):
    q = shared_quaverd
    results = []
    lock = threading.Lock()

    def client():
        for _ in range(10):
            status = q.request("GET", "/sandbox?limit=5").status
            with lock:
                results.append(status)

    threads = [threading.Thread(target=client) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * 400


def test_idle_connections_do_not_block_others(shared_quaverd):
    q = shared_quaverd
    idle = [socket.create_connection((q.host, q.port), timeout=5) for _ in range(40)]
    try:
        # Half send a partial request line and stall.
        for s in idle[:20]:
            s.sendall(b"GET /api/sandbox HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        assert q.request("GET", "/sandbox").status == 200
        assert time.monotonic() - t0 < 2
    finally:
        for s in idle:
            s.close()


def test_slow_body_does_not_block_others(shared_quaverd):
    q = shared_quaverd
    with socket.create_connection((q.host, q.port), timeout=10) as s:
        s.sendall(b"POST /api/sandbox HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  + q.token.encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"env\"")
        t0 = time.monotonic()
        assert q.request("GET", "/sandbox").status == 200
        assert time.monotonic() - t0 < 2


def test_oversized_headers_close_the_connection_and_quaverd_lives_on(shared_quaverd):
    q = shared_quaverd
    q.expect_log(r"lws: Ran out of header data space")
    with socket.create_connection((q.host, q.port), timeout=10) as s:
        s.sendall(b"GET /api/sandbox HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"HTTP/1.1 200"), data[:100]
    assert q.request("GET", "/sandbox").status == 200


def test_garbage_request_line_and_quaverd_lives_on(shared_quaverd):
    q = shared_quaverd
    for junk in (b"\x00\x01\x02\r\n\r\n", b"NOT-HTTP\r\n\r\n", b"GET\r\n\r\n",
                 b"GET /api/sandbox HTTP/9.9\r\n\r\n"):
        with socket.create_connection((q.host, q.port), timeout=10) as s:
            s.sendall(junk)
            try:
                s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                pass
    assert q.request("GET", "/sandbox").status == 200


def test_reads_do_not_wait_for_a_running_archive(make_quaverd):
    q = make_quaverd("--transition-delay", "2000")
    sid = create_sandbox(q)["id"]
    other = create_sandbox(q)["id"]
    q.ok("POST", f"/sandbox/{sid}/stop")
    wait_sandbox(q, sid, "stopped")
    q.ok("POST", f"/sandbox/{sid}/archive")
    t0 = time.monotonic()
    assert get_sandbox(q, sid)["state"] == "archiving"
    q.ok("GET", "/sandbox")
    q.ok("POST", f"/sandbox/{other}/stop")
    create_sandbox(q)
    assert time.monotonic() - t0 < 1.0, "requests waited for the archive"
    wait_sandbox(q, sid, "archived")


def test_changes_during_a_transition_are_409(make_quaverd):
    q = make_quaverd("--transition-delay", "2000")
    sid = create_sandbox(q)["id"]
    q.ok("POST", f"/sandbox/{sid}/stop")
    wait_sandbox(q, sid, "stopped")
    q.ok("POST", f"/sandbox/{sid}/archive")
    for path, body in ((f"/sandbox/{sid}/archive", None), (f"/sandbox/{sid}/stop", None),
                       (f"/sandbox/{sid}/snapshot", {"name": "while-archiving"})):
        err = assert_daytona_error(q.request("POST", path, json=body), 409)
        assert "archiving" in err["message"], err
    wait_sandbox(q, sid, "archived")


def test_start_during_archiving_waits_then_restores(make_quaverd):
    q = make_quaverd("--transition-delay", "1000")
    sid = create_sandbox(q)["id"]
    (q.state_dir / "sandboxes" / sid / "root" / "home" / "daytona" / "f").write_text("x")
    q.ok("POST", f"/sandbox/{sid}/stop")
    wait_sandbox(q, sid, "stopped")
    q.ok("POST", f"/sandbox/{sid}/archive")
    resp = q.ok("POST", f"/sandbox/{sid}/start")
    assert resp["state"] == "restoring", resp["state"]
    wait_sandbox(q, sid, "started", timeout=10)
    assert (q.state_dir / "sandboxes" / sid / "root" / "home" / "daytona" / "f").read_text() == "x"


def test_concurrent_start_and_stop_leave_a_consistent_state(quaverd):
    q = quaverd
    sid = create_sandbox(q)["id"]
    statuses = []

    def flip(action):
        for _ in range(15):
            statuses.append(q.request("POST", f"/sandbox/{sid}/{action}").status)

    threads = [threading.Thread(target=flip, args=(a,)) for a in ("start", "stop") * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(statuses) <= {200, 400, 409}, statuses
    final = wait_for("a resting state", lambda: (lambda s: s if s in ("started", "stopped")
                                                 else None)(get_sandbox(q, sid)["state"]))
    root = q.state_dir / "sandboxes" / sid / "root"
    assert root.is_dir(), final


def test_sigterm_with_requests_in_flight_exits_zero(make_quaverd):
    q = make_quaverd("--transition-delay", "1500")
    sid = create_sandbox(q)["id"]
    q.ok("POST", f"/sandbox/{sid}/stop")
    wait_sandbox(q, sid, "stopped")
    q.ok("POST", f"/sandbox/{sid}/archive")
    t0 = time.monotonic()
    q.stop()  # must exit 0; the running archive commits first
    assert time.monotonic() - t0 < 10
    q.start()
    assert get_sandbox(q, sid)["state"] == "archived"


def test_requests_shaped_like_the_sdk(shared_quaverd):
    """What @daytonaio/sdk 0.218 sends (daytona-api.md section 9.1): stop
    with a form-urlencoded empty body and ?force=false, start and delete
    without a body, the volume.get(name, create=true) dance."""
    q = shared_quaverd
    sdk = {"X-Daytona-Source": "sdk-typescript-legacy", "X-Daytona-SDK-Version": "0.218.0",
           "User-Agent": "sdk-typescript-legacy/0.218.0"}
    dto = q.ok("POST", "/sandbox", json={"env": {}, "labels": {"code-toolbox-language":
                                                               "typescript"}}, headers=sdk)
    assert dto["state"] == "started" and dto["toolboxProxyUrl"] and dto["env"] == {}
    sid = dto["id"]
    form = dict(sdk, **{"Content-Type": "application/x-www-form-urlencoded"})
    status, body = q.request("POST", f"/sandbox/{sid}/stop?force=false", body=b"", headers=form)
    assert status == 200, (status, body)
    wait_sandbox(q, sid, "stopped")
    status, body = q.request("POST", f"/sandbox/{sid}/start", headers=sdk)
    assert status == 200, (status, body)
    wait_sandbox(q, sid, "started")
    assert q.request("GET", f"/sandbox/{sid}?verbose=true", headers=sdk).status == 200
    name = "sdk-volume"
    assert q.request("GET", f"/volumes/by-name/{name}", headers=sdk).status == 404
    vol = q.ok("POST", "/volumes", json={"name": name}, headers=sdk)
    assert vol["state"] in ("pending_create", "ready")
    status, _ = q.request("DELETE", f"/sandbox/{sid}", headers=sdk)
    assert status == 200
    assert q.ok("GET", "/snapshots", headers=sdk)["page"] == 1
