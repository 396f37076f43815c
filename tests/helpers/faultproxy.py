"""A fault-injecting HTTP proxy between quaverfs and quaverd (issue 7, "Faults").

quaverfs is pointed at the proxy (-o api_url= or DAYTONA_API_URL = proxy.api_url);
the proxy forwards to quaverd and, on the tester's word at run time, answers
late, never, halfway or wrongly. Only the python stdlib; one thread per client
connection.

What it carries:
- every request to quaverd (the control plane /api, the toolbox /toolbox,
  websockets): a JSON answer has quaverd's own origin (http://127.0.0.1:QD)
  replaced by the proxy's, so the toolboxProxyUrl (and any URL quaverd hands
  out) leads back through the proxy;
- websocket upgrades (101) become a byte tunnel, which a fault can cut.

Faults (add(action, method=, path=, times=, **params); path is a regex
searched in the request target, method an exact method or None for any):
  "delay"      answer after params ms (latency of that request)
  "stall"      never answer (forward=True: quaverd does the work first);
               the connection stays open until the client gives up
  "reset"      forward, then send the head and part of the body and reset
               the connection (RST); at= bytes of the body sent (default half)
  "truncate"   the same with a clean close (FIN) instead of a reset
  "reset_request"  read part of the request body, then reset (a failed upload)
  "status"     answer code= (429, 500, 502, 503...) without forwarding
               (forward=True: after quaverd did the work); retry_after= adds
               the header
  "malformed"  forward, then replace a JSON answer with broken JSON (other
               answers, file content, pass)
  "ws_close"   a websocket upgrade is cut after after_bytes= bytes from
               quaverd (default 0) or after_s= seconds (clean close)
Global, any time: latency_ms (every answer waits that long), refuse() /
accept() (the port refuses connections, live connections are reset),
close_websockets() (cut every live tunnel now), clear() (no fault, stalls
released). When quaverd cannot be reached (killed), the client gets a 502
as from Daytona's proxy (upstream_down = "reset": its connection is reset).

Counters: injected (Counter by action), requests (number forwarded or
answered), and log (monotonic time, method, target, action) of the last 10000 requests.
"""

import collections
import re
import socket
import struct
import threading
import time

__all__ = ["FaultProxy", "Rule"]

MAX_HEAD = 64 << 10


class _Closed(Exception):
    """The peer closed (or reset) the connection."""


class _Conn:
    """A socket with a read buffer."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.received = 0

    def _fill(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise _Closed()
        self.received += len(data)
        self.buf += data

    def readline(self, limit=MAX_HEAD):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return line
            if len(self.buf) > limit:
                raise _Closed()
            self._fill()

    def read(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_to_close(self):
        try:
            while True:
                self._fill()
        except (_Closed, OSError):
            pass
        data, self.buf = self.buf, b""
        return data

    def read_head(self):
        """(first line, [(name, value)]) of an HTTP message, or _Closed."""
        first = self.readline()
        while first in (b"\r\n", b"\n"):  # tolerated between messages
            first = self.readline()
        headers = []
        size = len(first)
        while True:
            line = self.readline()
            size += len(line)
            if size > MAX_HEAD:
                raise _Closed()
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        return first.decode("latin-1").rstrip("\r\n"), headers

    def read_body(self, headers, until_close=False):
        """The body framed by @headers (chunked or Content-Length), decoded."""
        te = _header(headers, "transfer-encoding")
        if te and "chunked" in te.lower():
            out = []
            while True:
                size = int(self.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.readline() not in (b"\r\n", b"\n"):  # trailers
                        pass
                    return b"".join(out)
                out.append(self.read(size))
                self.readline()
        length = _header(headers, "content-length")
        if length is not None:
            return self.read(int(length))
        return self.read_to_close() if until_close else b""


def _header(headers, name):
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _without(headers, *names):
    return [(k, v) for k, v in headers if k.lower() not in names]


def _head_bytes(first, headers):
    return (first + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode(
        "latin-1")


def _reset(sock):
    """Closes @sock with a TCP RST (SO_LINGER 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class Rule:
    def __init__(self, action, method=None, path=None, times=None, **params):
        self.action = action
        self.method = method
        self.path = re.compile(path) if path else None
        self.times = times  # None: every matching request
        self.params = params
        self.hits = 0

    def matches(self, method, target):
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and self.method != method:
            return False
        return not self.path or bool(self.path.search(target))

    def __repr__(self):
        return (f"Rule({self.action!r}, {self.method!r}, "
                f"{self.path.pattern if self.path else None!r}, times={self.times}, "
                f"hits={self.hits}, {self.params!r})")


class FaultProxy:
    def __init__(self, upstream_port, port=0, upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self.latency_ms = 0
        self.rules = []
        self.lock = threading.Lock()
        self.injected = collections.Counter()
        self.requests = 0
        self.log = collections.deque(maxlen=10000)
        self.listener = None
        self.accept_thread = None
        self.socks = set()  # every live socket (client and upstream side)
        self.tunnels = set()  # live websocket tunnels: (client, upstream)
        self.release = threading.Event()  # set: stalls end (clear(), close())
        self.stalled = 0
        self.closed = False
        self.upstream_down = "502"  # or "reset": what the client gets when quaverd is down

    # ---- life ----

    @property
    def origin(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self):
        return self.origin + "/api"

    def start(self):
        self._listen()
        return self

    def _listen(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 5
        while True:
            try:
                s.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    s.close()
                    raise
                time.sleep(0.05)
        s.listen(128)
        self.port = s.getsockname()[1]
        self.listener = s
        self.accept_thread = threading.Thread(target=self._accept_loop, args=(s,), daemon=True)
        self.accept_thread.start()

    def _accept_loop(self, listener):
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            with self.lock:
                if self.listener is not listener:
                    _reset(sock)
                    return
                self.socks.add(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def close(self):
        self.closed = True
        self.release.set()
        self._stop_listening()
        self.drop_connections()

    def _stop_listening(self):
        with self.lock:
            listener, self.listener = self.listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
            self.accept_thread.join(5)

    # ---- run-time control ----

    def add(self, action, method=None, path=None, times=None, **params):
        rule = Rule(action, method, path, times, **params)
        with self.lock:
            self.rules.append(rule)
        return rule

    def remove(self, rule):
        with self.lock:
            if rule in self.rules:
                self.rules.remove(rule)
        self.release.set()
        self.release = threading.Event()

    def clear(self):
        """No fault any more: rules gone, no latency, stalled requests
        released (their connection is reset), the port accepting."""
        with self.lock:
            self.rules = []
            self.latency_ms = 0
            release, self.release = self.release, threading.Event()
        release.set()
        if self.listener is None and not self.closed:
            self.accept()

    def refuse(self):
        """The port refuses connections from now on; live ones are reset."""
        self.injected["refuse"] += 1
        self._stop_listening()
        self.drop_connections()

    def accept(self):
        if self.listener is None:
            self._listen()

    def drop_connections(self):
        with self.lock:
            socks, self.socks = list(self.socks), set()
            self.tunnels = set()
        for s in socks:
            _reset(s)

    def close_websockets(self):
        """Cuts every live websocket tunnel (both sides see a close)."""
        with self.lock:
            tunnels, self.tunnels = list(self.tunnels), set()
        for pair in tunnels:
            self.injected["ws_close"] += 1
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stalled_count(self):
        return self.stalled

    def wait_stalled(self, n=1, timeout=10.0):
        """Waits until @n requests are held by a stall; True when they are."""
        deadline = time.monotonic() + timeout
        while self.stalled < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def hits(self, action):
        return self.injected[action]

    # ---- serving ----

    def _match(self, method, target, upgrade):
        with self.lock:
            for rule in self.rules:
                if rule.matches(method, target):
                    if rule.action == "ws_close" and not upgrade:
                        continue
                    rule.hits += 1
                    return rule
        return None

    def _track(self, sock):
        with self.lock:
            self.socks.add(sock)

    def _untrack(self, sock):
        with self.lock:
            self.socks.discard(sock)

    def _connect_upstream(self):
        s = socket.create_connection(self.upstream, timeout=5)
        s.settimeout(None)
        self._track(s)
        return _Conn(s)

    def _serve(self, sock):
        client = _Conn(sock)
        upstream = None
        try:
            while not self.closed:
                try:
                    first, headers = client.read_head()
                except (_Closed, OSError):
                    return
                parts = first.split(" ")
                if len(parts) != 3:
                    return
                method, target, _version = parts
                expect = (_header(headers, "expect") or "").lower() == "100-continue"
                upgrade = (_header(headers, "upgrade") or "").lower() == "websocket"
                rule = self._match(method, target, upgrade)
                action = rule.action if rule else None
                with self.lock:
                    self.requests += 1
                    self.log.append((time.monotonic(), method, target, action))
                if action:
                    self.injected[action] += 1

                # the request body (a failed upload stops halfway)
                if expect:
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if action == "reset_request":
                    length = int(_header(headers, "content-length") or 0)
                    at = rule.params.get("at", length // 2)
                    try:
                        client.read(min(at, length))
                    except (_Closed, OSError):
                        pass
                    return
                try:
                    body = client.read_body(headers)
                except (_Closed, OSError):
                    return

                forward = action not in ("stall", "status") or rule.params.get("forward")
                if action == "stall" and not forward:
                    self._hold(client)
                    return
                if action == "status" and not forward:
                    self._delay(rule)
                    self._answer_status(sock, rule)
                    continue

                headers = _without(headers, "expect", "content-length", "transfer-encoding")
                if body or method in ("POST", "PUT", "PATCH"):
                    headers.append(("Content-Length", str(len(body))))
                request = _head_bytes(first, headers) + body
                try:
                    upstream, status_line, rheaders, rbody = self._exchange(
                        upstream, request, method, upgrade)
                except (_Closed, OSError):
                    # quaverd is gone: a gateway says so (502), as Daytona's
                    # proxy does for a runner that is down; or the connection
                    # is reset (upstream_down = "reset")
                    upstream = None
                    if self.upstream_down == "reset":
                        return
                    self._answer_status(sock, Rule("status", code=502),
                                        "quaverd is not reachable")
                    continue

                if action == "stall":
                    self._hold(client)
                    return
                if action == "status":
                    self._delay(rule)
                    self._answer_status(sock, rule)
                    continue
                self._delay(rule)
                code = int(status_line.split(" ")[1])
                if code == 101:
                    sock.sendall(_head_bytes(status_line, rheaders))
                    self._tunnel(client, upstream, rule if action == "ws_close" else None)
                    upstream = None
                    return
                rbody = self._rewrite(rheaders, rbody)
                if action == "malformed" and "json" in (_header(rheaders, "content-type") or ""):
                    rbody = b'{"id": "broken", "state": "started", "labels": {'
                    rheaders = _without(rheaders, "content-type")
                    rheaders.append(("Content-Type", "application/json"))
                keep_alive = (_header(rheaders, "connection") or "").lower() != "close"
                rheaders = _without(rheaders, "content-length", "transfer-encoding")
                no_body = method == "HEAD" or code in (204, 304) or code < 200
                if not no_body:
                    rheaders.append(("Content-Length", str(len(rbody))))
                head = _head_bytes(status_line, rheaders)
                if action in ("reset", "truncate"):
                    at = rule.params.get("at", len(rbody) // 2)
                    sock.sendall(head + rbody[:at])
                    if action == "reset":
                        _reset(sock)
                    else:
                        sock.shutdown(socket.SHUT_RDWR)
                    return
                sock.sendall(head + (b"" if no_body else rbody))
                if not keep_alive:
                    return
        except OSError:
            return
        finally:
            if upstream is not None:
                self._untrack(upstream.sock)
                _reset(upstream.sock)
            self._untrack(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _exchange(self, upstream, request, method, upgrade):
        """Sends @request to quaverd (on a fresh connection when the kept one
        turns out dead before answering); returns (conn, status line,
        headers, body)."""
        for attempt in (1, 2):
            fresh = upstream is None
            if fresh:
                upstream = self._connect_upstream()
            start = upstream.received - len(upstream.buf)
            try:
                upstream.sock.sendall(request)
                status_line, rheaders = upstream.read_head()
                while status_line.split(" ")[1].startswith("1") and \
                        status_line.split(" ")[1] != "101":
                    status_line, rheaders = upstream.read_head()
                code = int(status_line.split(" ")[1])
                if code == 101 or method == "HEAD" or code in (204, 304):
                    return upstream, status_line, rheaders, b""
                body = upstream.read_body(rheaders, until_close=True)
                if (_header(rheaders, "connection") or "").lower() == "close" or (
                        _header(rheaders, "content-length") is None and
                        "chunked" not in (_header(rheaders, "transfer-encoding") or "")):
                    self._untrack(upstream.sock)
                    upstream.sock.close()
                    upstream = None
                return upstream, status_line, rheaders, body
            except (_Closed, OSError):
                answered = upstream.received > start
                self._untrack(upstream.sock)
                _reset(upstream.sock)
                upstream = None
                if fresh or answered or attempt == 2:
                    raise
        raise _Closed()

    def _rewrite(self, headers, body):
        ctype = (_header(headers, "content-type") or "").lower()
        if "json" not in ctype and "text" not in ctype:
            return body
        up = self.upstream[1]
        for host in (b"127.0.0.1", b"localhost"):
            body = body.replace(host + b":%d" % up, b"127.0.0.1:%d" % self.port)
        return body

    def _delay(self, rule):
        ms = self.latency_ms + (rule.params.get("ms", 0) if rule and rule.action == "delay" else 0)
        if ms:
            time.sleep(ms / 1000.0)

    def _answer_status(self, sock, rule, message="injected by the fault proxy"):
        code = rule.params.get("code", 503)
        reason = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
                  503: "Service Unavailable", 504: "Gateway Timeout"}.get(code, "Injected")
        body = (b'{"statusCode": %d, "message": "%s", "error": "%s"}' %
                (code, message.encode(), reason.encode()))
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if rule.params.get("retry_after") is not None:
            headers.append(("Retry-After", str(rule.params["retry_after"])))
        sock.sendall(_head_bytes(f"HTTP/1.1 {code} {reason}", headers) + body)

    def _hold(self, client):
        """A stalled request: nothing is sent until the client closes, the
        stall is released (then the connection is reset) or the proxy closes."""
        release = self.release
        with self.lock:
            self.stalled += 1
        try:
            client.sock.settimeout(0.1)
            while not release.is_set() and not self.closed:
                try:
                    if not client.sock.recv(1 << 16):
                        return
                except socket.timeout:
                    continue
                except OSError:
                    return
        finally:
            with self.lock:
                self.stalled -= 1
            _reset(client.sock)

    def _tunnel(self, client, upstream, rule):
        pair = (client.sock, upstream.sock)
        with self.lock:
            self.tunnels.add(pair)
        cut_after = rule.params.get("after_bytes", 0) if rule else None
        cut_at = time.monotonic() + rule.params["after_s"] if rule and "after_s" in \
            rule.params else None
        if rule and "after_s" in rule.params:
            cut_after = None

        def close_both():
            with self.lock:
                self.tunnels.discard(pair)
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def pump(src, dst, pending, counted):
            sent = 0
            try:
                if pending:
                    dst.sendall(pending)
                    sent += len(pending)
                src.settimeout(0.1)
                while True:
                    if counted and cut_at is not None and time.monotonic() >= cut_at:
                        break
                    if counted and cut_after is not None and sent >= cut_after:
                        break
                    try:
                        data = src.recv(1 << 16)
                    except socket.timeout:
                        continue
                    if not data:
                        break
                    if counted and cut_after is not None and sent + len(data) > cut_after:
                        data = data[:cut_after - sent]
                    dst.sendall(data)
                    sent += len(data)
            except OSError:
                pass
            close_both()

        up = threading.Thread(target=pump, args=(client.sock, upstream.sock, client.buf, False),
                              daemon=True)
        client.buf = b""
        up.start()
        pump(upstream.sock, client.sock, upstream.buf, rule is not None)
        up.join(5)
        self._untrack(upstream.sock)
        upstream.sock.close()


# ---- a quaverfs mount through the proxy ---------------------------------------

def timed(fn, *args, **kw):
    """(errno or 0, seconds, value) of fn(*args): one syscall measured. No
    thread of its own: run it under fsmount.call() or in a thread."""
    t0 = time.monotonic()
    try:
        value = fn(*args, **kw)
        return 0, time.monotonic() - t0, value
    except OSError as e:
        return e.errno, time.monotonic() - t0, None


class FaultEnv:
    """One quaverd on a fixed port, a FaultProxy in front of it and a quaverfs
    mount on the proxy (fsmount.Mount with api_url = the proxy). Made by
    fault_env(); the proxy outlives the mount's teardown."""

    def __init__(self, m, px, cache_dir):
        self.m = m
        self.px = px
        self.qd = m.qd
        self.cache_dir = cache_dir

    def sandbox_id(self, name):
        return self.qd.ok("GET", f"/sandbox/{name}")["id"]

    def storage(self, name):
        """The sandbox's filesystem on the host (doc/quaverd.md state dir)."""
        return self.qd.state_dir / "sandboxes" / self.sandbox_id(name) / "root"

    def staged(self):
        """{path: bytes} of every file quaverfs keeps in its staging directory."""
        import os
        out = {}
        for dirpath, _dirs, files in os.walk(self.cache_dir):
            for f in files:
                p = os.path.join(dirpath, f)
                try:
                    with open(p, "rb") as fh:
                        out[p] = fh.read()
                except OSError:
                    pass
        return out

    def flush(self):
        self.m.write("control", "flush\n")


def fault_env(make_mount, proxies, tmp_path, fs_options=("op_timeout=20",), **kw):
    """Starts a FaultEnv: @make_mount is fsmount's fixture, @proxies a list
    the caller's fixture closes after the mounts are gone."""
    from fsmount import free_port
    port = free_port()
    px = FaultProxy(port).start()
    proxies.append(px)
    # the staging directory, where the copies of failed uploads stay
    cache = tmp_path / f"cache{len(proxies)}"
    cache.mkdir(mode=0o700)
    m = make_mount(port=port, api_url=px.api_url,
                   fs_options=[*fs_options, f"cache_dir={cache}"], **kw)
    return FaultEnv(m, px, cache)


# ---- what the fault suites share ---------------------------------------------

FAST = 3.0  # fs-layout.md: calls fail fast with EIO when the port refuses
# 429/502/503 and resets of reads are retried (4 times, 250 ms x attempt), and
# the kernel asks a second lookup when a cached name's revalidation fails
RETRIED = 8.0
REQUEST_DEADLINE = 30.0  # fs-layout.md, General rules, "Network"
SLACK = 2.0
# what quaverfs logs (warn) about the faults these suites inject
LOG = (r"injected by the fault proxy|not valid JSON|reset|closed|refused|connect|timed? ?out|"
       r"no answer|Recv failure|transfer|unreachable|Empty reply|interrupted|not reachable|"
       r"upload failed|stalled")


def errname(e):
    import errno
    return errno.errorcode.get(e, str(e))


def arm_after_flush(fe, *rules):
    """Drops every cache (ours and, after 1 s, the kernel's), then arms @rules:
    (action, method, path, times, params) tuples."""
    fe.flush()
    time.sleep(1.1)
    return [fe.px.add(a, method=meth, path=path, times=times, **params)
            for a, meth, path, times, params in rules]


try:
    import pytest

    @pytest.fixture
    def proxies():
        """The FaultProxies of a test, closed after its mounts are gone
        (request it before make_mount)."""
        made = []
        yield made
        for px in made:
            px.close()
            # the tally the suites' figures come from (pytest -s shows it)
            print(f"\nfaultproxy: {px.requests} requests, injected {dict(px.injected)}")

    @pytest.fixture
    def fe(proxies, make_mount, tmp_path):
        """A FaultEnv for one test (op_timeout=20)."""
        return fault_env(make_mount, proxies, tmp_path)
except ImportError:  # the proxy alone, outside pytest
    pass
