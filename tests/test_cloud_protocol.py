"""quaverfs against what Daytona cloud demands of a client (daytona-api.md
section 10, issue 6 "quaverfs against Daytona cloud").

Nobody here can reach the cloud, so what goes on the wire is checked: a
recording proxy (plain Python, http.server) sits between a real quaverfs
and a real quaverd in its cloud-like mode (doc/quaverd.md), forwards every
request, records it (method, path, query, headers, body, time, answer), and
rewrites the toolboxProxyUrl the API hands out so the toolbox traffic goes
through it too. It can answer chosen requests itself (429, 503, 404) and
serve TLS with a certificate made by openssl for the test.

Every test asserts what a user sees (shell results, errno, quaverfs's
messages) and what the cloud would see (the recorded requests).
"""

import http.client
import json
import os
import re
import shutil
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fsmount import (Backend, Mount, call, errno_of, mountinfo_entry, quaverfs_bin, report_logs,
                     run)

SOURCE = "quaverfs"
SDK_VERSION = "0.218.0"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "content-length"}


# ---- the recording proxy ---------------------------------------------------------

class Record:
    def __init__(self, method, target, headers, body):
        self.t = time.monotonic()
        self.method = method
        self.target = target  # path?query as received
        split = urllib.parse.urlsplit(target)
        self.path = urllib.parse.unquote(split.path)
        self.query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        self.headers = headers  # lower-case names
        self.body = body
        self.status = None

    def json(self):
        return json.loads(self.body) if self.body else None

    def __repr__(self):
        return f"<{self.method} {self.target} -> {self.status}>"


class Proxy:
    """A forwarding proxy for one quaverd: API requests to its API port,
    /tbN/toolbox/... to its toolbox port. toolboxProxyUrl in answers becomes
    {proxy}/tb{generation}/toolbox (a toolbox URL of another generation is
    refused with 404, as a cloud proxy URL that moved would be)."""

    def __init__(self, qd, tls=None):
        self.qd = qd
        self.records = []
        self.rules = []  # [{"method", "path" (regex), "status", "times", "headers"}]
        self.lock = threading.Lock()
        self.generation = 1
        self.tls = tls
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_any(self):
                proxy.serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls["cert"], tls["key"])
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.origin = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.api_url = self.origin + "/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # -- rules and records --

    def fail(self, method, path, status, times=1, headers=None, body=None):
        """The next @times requests matching answer @status without
        reaching quaverd (times=None: until cleared)."""
        with self.lock:
            self.rules.append({"method": method, "path": re.compile(path), "status": status,
                               "times": times, "headers": headers or {}, "body": body})

    def clear_rules(self):
        with self.lock:
            self.rules = []

    def mark(self):
        with self.lock:
            return len(self.records)

    def since(self, mark=0):
        with self.lock:
            return list(self.records[mark:])

    def _rule_for(self, method, path):
        with self.lock:
            for r in self.rules:
                if (r["method"] in (None, method) and r["path"].search(path)
                        and (r["times"] is None or r["times"] > 0)):
                    if r["times"] is not None:
                        r["times"] -= 1
                    return r
        return None

    # -- forwarding --

    def upstream(self, path):
        """(port, path) at quaverd for a request path of ours."""
        m = re.match(r"^/tb(\d+)(/toolbox/.*)$", path)
        if m:
            return self.qd.toolbox_port, m.group(2), int(m.group(1))
        return self.qd.port, path, None

    def rewrite(self, raw):
        """toolboxProxyUrl (and the toolbox-proxy-url answer) name us."""
        text = raw.decode("utf-8", errors="surrogateescape")
        ours = f"{self.origin}/tb{self.generation}/toolbox"
        text = text.replace(self.qd.toolbox_url, ours)
        return text.encode("utf-8", errors="surrogateescape")

    def serve(self, h):
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        rec = Record(h.command, h.path, headers, body)
        with self.lock:
            self.records.append(rec)
        path_only = urllib.parse.urlsplit(h.path).path
        rule = self._rule_for(h.command, path_only)
        if rule is not None:
            payload = rule["body"]
            if payload is None:
                payload = json.dumps({"statusCode": rule["status"], "error": "Injected",
                                      "message": f"injected {rule['status']}"}).encode()
            rec.status = rule["status"]
            h.send_response(rule["status"])
            for k, v in rule["headers"].items():
                h.send_header(k, v)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        port, path, generation = self.upstream(h.path)
        if generation is not None and generation != self.generation:
            # a toolbox base from before the last start: the cloud's old proxy
            # URL would not reach the sandbox any more either
            payload = json.dumps({"statusCode": 404, "message": "stale toolbox URL"}).encode()
            rec.status = 404
            h.send_response(404)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        fwd = {k: v for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or h.command in ("POST", "PUT", "PATCH"):
            fwd["Content-Length"] = str(len(body))
        try:
            conn.request(h.command, path, body=body or None, headers=fwd)
            resp = conn.getresponse()
            raw = resp.read()
            resp_headers = resp.getheaders()
            status = resp.status
        finally:
            conn.close()
        if "json" in dict((k.lower(), v) for k, v in resp_headers).get("content-type", ""):
            raw = self.rewrite(raw)
        rec.status = status
        h.send_response(status)
        for k, v in resp_headers:
            if k.lower() not in HOP_BY_HOP:
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(raw)


class CloudQuaverd(Backend):
    """quaverd in cloud-like mode, without injected faults (the proxy
    injects the ones a test wants, deterministically)."""

    def __init__(self, base_dir, delay_ms=300, extra=()):
        super().__init__(base_dir, args=["--cloud-like", "--transition-delay", str(delay_ms),
                                         *extra])

    def start(self, extra=()):
        super().start(extra)
        self.toolbox_url = (self.state_dir / "toolbox_url").read_text().strip()
        self.toolbox_port = urllib.parse.urlsplit(self.toolbox_url).port
        return self


class ProxiedMount(Mount):
    """quaverfs -o api_url={proxy} with credentials in the environment;
    quaverd is the test's (CloudQuaverd)."""

    def __init__(self, base, qd, proxy, env, fs_options=(), debug=True):
        super().__init__(base, mode="proxied", fs_options=[f"api_url={proxy.api_url}",
                                                           *fs_options],
                         env=env, debug=debug)
        self.given_qd = qd

    def start(self):
        super().start()
        self.qd = self.given_qd
        return self


@pytest.fixture
def cloud(tmp_path, request):
    """(quaverd in cloud-like mode, a recording proxy in front of it)."""
    qd = CloudQuaverd(tmp_path / "quaverd")
    qd.start()
    proxy = Proxy(qd)
    yield qd, proxy
    proxy.close()
    problems = qd.finish()
    if problems:
        pytest.fail("quaverd problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def mounted(tmp_path, request):
    """Factory: mounted(qd, proxy, env=..., fs_options=...) -> a started
    ProxiedMount, unmounted and log-checked at the end."""
    mounts = []

    def factory(qd, proxy, env=None, fs_options=(), expect=()):
        if env is None:
            env = {"DAYTONA_API_KEY": qd.token}
        m = ProxiedMount(tmp_path / f"m{len(mounts)}", qd, proxy, env, fs_options)
        for pattern in expect:
            m.expect_fs_log(pattern)
        mounts.append(m)
        m.start()
        report_logs(request.node, m)
        return m

    yield factory
    problems = []
    for m in reversed(mounts):
        m.qd = None  # quaverd is the cloud fixture's to stop
        problems += m.finish()
    if problems:
        pytest.fail("teardown found problems:\n" + "\n".join(problems), pytrace=False)


def create_sandbox(m, name):
    m.sh(f"mkdir sandboxes/{name}", timeout=60)
    assert m.read("sandboxes", name, "state").strip() == "started"


# ---- headers, credentials, target --------------------------------------------------

def check_common_headers(records, bearer):
    assert records, "no request recorded"
    for r in records:
        h = r.headers
        assert h.get("authorization") == f"Bearer {bearer}", (r, h.get("authorization"))
        assert h.get("x-daytona-source") == SOURCE, r
        assert h.get("x-daytona-sdk-version") == SDK_VERSION, r
        assert h.get("accept") == "application/json", r


def test_every_request_carries_the_cloud_headers_and_the_target(cloud, mounted):
    qd, proxy = cloud
    m = mounted(qd, proxy, env={"DAYTONA_API_KEY": qd.token, "DAYTONA_TARGET": "eu"})
    create_sandbox(m, "h1")
    m.sh("echo hello > sandboxes/h1/files/home/daytona/a.txt")
    assert m.sh("cat sandboxes/h1/files/home/daytona/a.txt").stdout == "hello\n"
    recs = proxy.since()
    check_common_headers(recs, qd.token)
    assert not any("x-daytona-organization-id" in r.headers for r in recs), \
        "an API key needs no organization header"
    creates = [r for r in recs if r.method == "POST" and r.path == "/api/sandbox"]
    assert len(creates) == 1 and creates[0].json()["target"] == "eu", creates
    assert creates[0].json()["name"] == "h1"
    # the toolbox went through the URL the API handed out, not /api
    assert any(r.path.startswith("/tb1/toolbox/") and "/files" in r.path for r in recs)
    assert not any(r.path.startswith("/api/toolbox") for r in recs)
    # the key is on the wire only: not in argv, the mount table or the debug log
    cmdline = Path(f"/proc/{m.proc.pid}/cmdline").read_bytes().decode(errors="replace")
    assert qd.token not in cmdline and qd.token not in (mountinfo_entry(m.mnt) or "")
    assert qd.token not in m.log_text()


def test_jwt_with_organization_id(cloud, mounted):
    """DAYTONA_JWT_TOKEN + DAYTONA_ORGANIZATION_ID: Bearer JWT and the
    organization header on every request (quaverd accepts its token as the
    JWT here)."""
    qd, proxy = cloud
    org = (qd.state_dir / "organization").read_text().strip()
    m = mounted(qd, proxy, env={"DAYTONA_JWT_TOKEN": qd.token, "DAYTONA_ORGANIZATION_ID": org})
    create_sandbox(m, "j1")
    m.sh("ls sandboxes/j1/files/home/daytona")
    recs = proxy.since()
    check_common_headers(recs, qd.token)
    assert all(r.headers.get("x-daytona-organization-id") == org for r in recs)


def test_jwt_without_organization_is_refused_before_any_request(cloud, tmp_path):
    qd, proxy = cloud
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAYTONA_")}
    env["DAYTONA_JWT_TOKEN"] = qd.token
    r = run([quaverfs_bin(), "-f", "-o", f"api_url={proxy.api_url}", str(mnt)], env=env,
            timeout=20)
    assert r.returncode != 0
    assert "DAYTONA_ORGANIZATION_ID" in r.stderr
    assert proxy.since() == []


# ---- paging -------------------------------------------------------------------------

def test_cursor_paging_walks_every_page(cloud, mounted):
    """The proxy cuts quaverd's list into pages of 2 with its own opaque
    cursors: quaverfs must follow nextCursor to the end."""
    qd, proxy = cloud
    names = [f"p{i}" for i in range(5)]
    for n in names:
        qd.create_sandbox(n)
    pages = {}

    original = proxy.serve

    def paging_serve(h):
        split = urllib.parse.urlsplit(h.path)
        if h.command != "GET" or split.path != "/api/sandbox":
            return original(h)
        q = urllib.parse.parse_qs(split.query)
        rec = Record(h.command, h.path, {k.lower(): v for k, v in h.headers.items()}, b"")
        with proxy.lock:
            proxy.records.append(rec)
        cursor = q.get("cursor", [None])[0]
        if cursor is None:
            pages["all"] = qd.list_sandboxes()
            start = 0
        else:
            start = int(cursor.split("-")[1])
        items = pages["all"][start:start + 2]
        nxt = f"c-{start + 2}" if start + 2 < len(pages["all"]) else None
        raw = proxy.rewrite(json.dumps({"items": items, "nextCursor": nxt}).encode())
        rec.status = 200
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)

    proxy.serve = paging_serve
    m = mounted(qd, proxy)
    assert m.listdir("sandboxes") == sorted(names)
    lists = [r for r in proxy.since() if r.method == "GET" and r.path == "/api/sandbox"]
    cursors = [r.query.get("cursor", [None])[0] for r in lists]
    # the first walk: no cursor, then each nextCursor in turn, then stop
    first = cursors.index(None)
    assert cursors[first:first + 3] == [None, "c-2", "c-4"], cursors
    assert all(r.query.get("limit") for r in lists)


# ---- state polling --------------------------------------------------------------------

def test_transitional_states_are_polled_with_backoff(tmp_path, mounted):
    """A create that stays "creating" for 3 s: quaverfs polls GET
    /sandbox/{id} starting fast and backing off, never faster than 100 ms
    and never slower than about 1 s."""
    qd = CloudQuaverd(tmp_path / "slowqd", delay_ms=3000)
    qd.start()
    proxy = Proxy(qd)
    try:
        m = mounted(qd, proxy)
        mark = proxy.mark()
        t0 = time.monotonic()
        create_sandbox(m, "slow")
        took = time.monotonic() - t0
        assert took >= 2.9
        recs = proxy.since(mark)
        create = next(r for r in recs if r.method == "POST" and r.path == "/api/sandbox")
        assert create.status == 200
        sid = json.loads(qd.request("GET", "/sandbox/slow").raw)["id"]
        polls = [r for r in recs if r.method == "GET" and r.path == f"/api/sandbox/{sid}"
                 and r.t > create.t]
        times = [create.t] + [r.t for r in polls]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert 4 <= len(polls) <= 12, f"{len(polls)} polls in {took:.1f} s: {gaps}"
        assert min(gaps[1:]) >= 0.09, gaps
        # the backoff's cap is 1 s; the first gap also holds the create's own
        # work after its answer, and a loaded 2-core machine adds its delays
        assert max(gaps[1:]) <= 2.0, gaps
        # backing off: later gaps between polls are longer than the first ones
        assert sum(gaps[-2:]) > 2 * sum(gaps[1:3]), gaps
    finally:
        proxy.close()
        problems = qd.finish()
        assert not problems, problems


# ---- throttling and gateway errors ---------------------------------------------------

def test_429_and_503_are_retried_with_backoff_within_the_deadline(cloud, mounted):
    qd, proxy = cloud
    m = mounted(qd, proxy, expect=[r"status 503", r"injected 503"])
    create_sandbox(m, "r1")
    sid = json.loads(qd.request("GET", "/sandbox/r1").raw)["id"]

    # two 503s on a GET: retried after 250 ms x attempt (plus jitter); the user sees nothing
    proxy.fail("GET", r"^/api/sandbox$", 503, times=2)
    mark = proxy.mark()
    m.sh("echo flush > control")
    assert m.listdir("sandboxes") == ["r1"]
    recs = [r for r in proxy.since(mark) if r.path == "/api/sandbox"]
    assert [r.status for r in recs[:3]] == [503, 503, 200], recs
    gaps = [b.t - a.t for a, b in zip(recs, recs[1:3])]
    assert 0.24 <= gaps[0] <= 0.8 and 0.49 <= gaps[1] <= 1.2, gaps

    # a 429 on a POST is retried too (the throttler did nothing), after its Retry-After
    proxy.fail("POST", r"^/api/sandbox/[^/]+/stop$", 429, headers={"Retry-After": "1"})
    mark = proxy.mark()
    m.write("sandboxes/r1/state", "stop\n", timeout=60)
    assert m.read("sandboxes/r1/state").strip() == "stopped"
    stops = [r for r in proxy.since(mark) if r.method == "POST" and r.path.endswith("/stop")]
    assert [r.status for r in stops] == [429, 200], stops
    assert stops[1].t - stops[0].t >= 0.95

    # a 503 on a POST is not repeated (the work may be done): the user gets EIO
    proxy.fail("POST", r"^/api/sandbox/[^/]+/start$", 503)
    mark = proxy.mark()
    assert m.errno_write("sandboxes/r1/state", "start\n", timeout=60) == 5  # EIO
    starts = [r for r in proxy.since(mark) if r.method == "POST" and r.path.endswith("/start")]
    assert [r.status for r in starts] == [503], starts
    assert qd.get("sandbox", "r1")["state"] == "stopped"

    # endless 503s: the call gives up within the client's retries, with EIO, not a hang
    proxy.fail("GET", rf"^/api/sandbox/{sid}$", 503, times=None)
    proxy.fail("GET", r"^/api/sandbox$", 503, times=None)
    m.sh("echo flush > control")
    t0 = time.monotonic()
    assert errno_of(os.listdir, m.path("sandboxes"), timeout=40) == 5
    assert time.monotonic() - t0 < 31
    proxy.clear_rules()


def test_a_transient_failure_is_never_cached_as_absent(cloud, mounted):
    """While the API fails (503), a name is EIO, not ENOENT, and once it
    answers again the sandbox is there at once: no negative entry was kept,
    not in quaverfs and not in the kernel."""
    qd, proxy = cloud
    qd.create_sandbox("n1")
    m = mounted(qd, proxy, expect=[r"status 503", r"injected 503"])
    proxy.fail(None, r"^/api/sandbox", 503, times=None)
    m.sh("echo flush > control")
    assert errno_of(os.stat, m.path("sandboxes", "n1"), timeout=40) == 5
    assert errno_of(os.stat, m.path("sandboxes", "n1", "state"), timeout=40) == 5
    proxy.clear_rules()
    st = call(os.stat, m.path("sandboxes", "n1"), timeout=30)
    assert st.st_mode & 0o40000
    assert m.read("sandboxes", "n1", "state").strip() == "started"


# ---- one lifecycle, checked against daytona-api.md ---------------------------------------

ID = r"[0-9a-f-]{36}"
NAME = r"[A-Za-z0-9._-]+"
# (method, path regex, query names allowed, body fields allowed or None for no JSON body)
API_SHAPES = [
    ("GET", r"/api/sandbox", {"limit", "cursor", "labels", "name", "id", "states"}, None),
    ("POST", r"/api/sandbox", set(), {
        "name", "snapshot", "user", "env", "labels", "public", "target", "cpu", "gpu",
        "memory", "disk", "gpuType", "spot", "autoStopInterval", "autoPauseInterval",
        "autoArchiveInterval", "autoDeleteInterval", "ttlMinutes", "volumes", "buildInfo",
        "networkBlockAll", "networkAllowList", "domainAllowList", "outboundProxyUrl",
        "otelEndpointOverride", "linkedSandbox", "secrets", "kvm"}),
    ("GET", rf"/api/sandbox/{NAME}", {"verbose"}, None),
    ("POST", rf"/api/sandbox/{NAME}/(start|archive)", set(), None),
    ("POST", rf"/api/sandbox/{NAME}/stop", {"force"}, None),
    ("POST", rf"/api/sandbox/{NAME}/recover", {"skipStart"}, None),
    ("DELETE", rf"/api/sandbox/{NAME}", set(), None),
    ("PUT", rf"/api/sandbox/{NAME}/labels", set(), {"labels"}),
    ("POST", rf"/api/sandbox/{NAME}/(autostop|autoarchive|autodelete)/-?\d+", set(), None),
    ("POST", rf"/api/sandbox/{NAME}/snapshot", set(), {"name", "includeMemory"}),
    ("GET", rf"/api/sandbox/{NAME}/ports/\d+/preview-url", set(), None),
    ("GET", rf"/api/sandbox/{ID}/toolbox-proxy-url", set(), None),
    ("GET", r"/api/volumes", {"includeDeleted"}, None),
    ("GET", rf"/api/volumes/{ID}", set(), None),
    ("GET", rf"/api/volumes/by-name/{NAME}", set(), None),
    ("POST", r"/api/volumes", set(), {"name"}),
    ("DELETE", rf"/api/volumes/{ID}", set(), None),
    ("GET", r"/api/snapshots", {"page", "limit", "name", "sourceSandboxId", "sort", "order"},
     None),
    ("GET", rf"/api/snapshots/{NAME}", set(), None),
    ("DELETE", rf"/api/snapshots/{NAME}", set(), None),
]
# relative to {toolboxProxyUrl}/{sandbox id}
TOOLBOX_SHAPES = [
    ("GET", r"/files/?", {"path", "depth"}, None),
    ("GET", r"/files/(info|download)", {"path"}, None),
    ("POST", r"/files/bulk-download", set(), {"paths"}),
    # "mode" is not in daytona-api.md 6: quaverfs sends it so quaverd keeps a new
    # file's mode; Daytona's daemon (gin) ignores an unknown query parameter
    ("POST", r"/files/(upload|upload-v2|bulk-upload)", {"path", "mode"}, "raw"),
    ("POST", r"/files/folder", {"path", "mode"}, None),
    ("DELETE", r"/files", {"path", "recursive"}, None),
    ("POST", r"/files/move", {"source", "destination"}, None),
    ("POST", r"/files/permissions", {"path", "owner", "group", "mode"}, None),
    ("GET", r"/files/(find|search)", {"path", "pattern"}, None),
    ("POST", r"/files/replace", set(), {"files", "pattern", "newValue"}),
    ("POST", r"/process/execute", set(), {"command", "cwd", "envs", "timeout"}),
    ("POST", r"/process/code-run", set(), {"code", "language", "argv", "envs", "timeout"}),
    ("GET", r"/process/session", set(), None),
    ("POST", r"/process/session", set(), {"sessionId"}),
    ("GET", r"/process/session/[^/]+", set(), None),
    ("DELETE", r"/process/session/[^/]+", set(), None),
    ("POST", r"/process/session/[^/]+/exec", set(),
     {"command", "runAsync", "async", "suppressInputEcho"}),
    ("GET", r"/process/session/[^/]+/command/[^/]+(/logs)?", {"follow"}, None),
    ("POST", r"/process/session/[^/]+/command/[^/]+/input", set(), {"data"}),
    ("GET", r"/process/pty(/[^/]+)?", set(), None),
    ("POST", r"/process/pty", set(), {"id", "cwd", "envs", "cols", "rows", "lazyStart"}),
    ("POST", r"/process/pty/[^/]+/resize", set(), {"cols", "rows"}),
    ("DELETE", r"/process/pty/[^/]+", set(), None),
    ("GET", r"/(version|user-home-dir|work-dir)", set(), None),
    ("POST", r"/env", set(), {"set", "unset", "unsetValuePrefix"}),
]


def shape_problem(r):
    """Why @r is not a request Daytona knows (daytona-api.md 2-7), or None."""
    m = re.match(rf"^/tb\d+/toolbox/({ID})(/.*)$", r.path)
    shapes, path = (TOOLBOX_SHAPES, m.group(2)) if m else (API_SHAPES, r.path)
    for method, pattern, query, body in shapes:
        if method != r.method or not re.fullmatch(pattern, path):
            continue
        extra = set(r.query) - query
        if extra:
            return f"unknown query {sorted(extra)}"
        if body == "raw":
            return None
        if body is None:
            if r.body and r.body.strip() not in (b"", b"{}"):
                return f"unexpected body {r.body[:80]!r}"
            return None
        try:
            data = json.loads(r.body)
        except ValueError:
            return f"body is not JSON: {r.body[:80]!r}"
        if not isinstance(data, dict):
            return "body is not a JSON object"
        if set(data) - body:
            return f"unknown fields {sorted(set(data) - body)}"
        return None
    return "no such route"


def test_a_lifecycle_sends_only_requests_daytona_knows(cloud, mounted):
    """create, labels, files, a run, stop, start, archive, restore,
    snapshot, volume, delete: every request quaverfs sent has a path,
    method, query and body fields of daytona-api.md, and the headers."""
    qd, proxy = cloud
    m = mounted(qd, proxy)
    m.sh("echo 'create volume lv' > control")
    m.sh("echo 'create sandbox lc label=team=a env=X=1 autostop=30 volume=lv:/data' > control")
    assert m.read("sandboxes", "lc", "state").strip() == "started"
    m.sh("echo b > sandboxes/lc/labels/extra && rm sandboxes/lc/labels/extra")
    m.sh("echo 45 > sandboxes/lc/autostop")
    f = "sandboxes/lc/files/home/daytona"
    m.sh(f"mkdir {f}/d && echo hi > {f}/d/a && cat {f}/d/a && mv {f}/d/a {f}/d/b && "
         f"chmod 600 {f}/d/b && ls -l {f}/d && head -c 1 {f}/d/b && rm {f}/d/b && rmdir {f}/d")
    m.sh("mkdir sandboxes/lc/runs/s && echo 'echo run-ok' > sandboxes/lc/runs/s/command && "
         "cat sandboxes/lc/runs/s/exit && cat sandboxes/lc/runs/s/output")
    for word, want in (("stop", "stopped"), ("start", "started"), ("stop", "stopped"),
                       ("archive", "archived"), ("start", "started")):
        m.write("sandboxes/lc/state", word + "\n", timeout=60)
        assert m.read("sandboxes", "lc", "state").strip() == want
    m.sh("echo lcsnap > sandboxes/lc/snapshot && cat sandboxes/lc/ports/3000 && "
         "rmdir sandboxes/lc && rmdir volumes/lv && rmdir snapshots/lcsnap", timeout=60)
    assert m.listdir("sandboxes") == []

    recs = proxy.since()
    check_common_headers(recs, qd.token)
    bad = [(r, why) for r in recs if (why := shape_problem(r))]
    assert not bad, "requests Daytona would not know:\n" + "\n".join(
        f"{r.method} {r.target} {r.body[:100]!r}: {why}" for r, why in bad)
    seen = {(r.method, re.sub(ID, "ID", r.path)) for r in recs}
    for want in [("POST", "/api/sandbox"), ("POST", "/api/sandbox/ID/stop"),
                 ("POST", "/api/sandbox/ID/archive"), ("DELETE", "/api/sandbox/ID"),
                 ("POST", "/api/volumes"), ("POST", "/api/sandbox/ID/snapshot")]:
        assert want in seen, (want, sorted(seen))
    assert any(re.search(r"/toolbox/ID/process/session", p) for _, p in seen), sorted(seen)


def test_a_toolbox_url_that_changes_across_a_start_is_followed(cloud, mounted):
    """Daytona may hand out another toolboxProxyUrl after a start (section
    10: refresh it after start/restore): files/ follows the sandbox record's
    URL and never asks the old one again (the proxy answers 404 there)."""
    qd, proxy = cloud
    m = mounted(qd, proxy)
    create_sandbox(m, "tu")
    f = "sandboxes/tu/files/home/daytona"
    m.sh(f"mkdir {f}/d && echo one > {f}/d/a.txt && cat {f}/d/a.txt")
    m.write("sandboxes/tu/state", "stop\n", timeout=60)
    assert m.read("sandboxes", "tu", "state").strip() == "stopped"
    with proxy.lock:
        proxy.generation = 2
    m.write("sandboxes/tu/state", "start\n", timeout=60)
    assert m.read("sandboxes", "tu", "state").strip() == "started"
    mark = proxy.mark()
    time.sleep(1.1)  # past the attribute window: the files are asked for again
    res = m.sh(f"cat {f}/d/a.txt && echo two > {f}/d/b.txt && ls {f}/d && cat {f}/d/b.txt")
    assert res.stdout.split() == ["one", "a.txt", "b.txt", "two"], res
    toolbox = [r for r in proxy.since(mark) if "/toolbox/" in r.path]
    assert toolbox, "no toolbox request after the start"
    old = [r for r in toolbox if not r.path.startswith("/tb2/")]
    assert not old, f"requests to the toolbox URL from before the start: {old}"
    assert all(r.status < 400 for r in toolbox), toolbox
    assert any(r.method == "POST" and "/files/upload" in r.path for r in toolbox), toolbox


# ---- TLS -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl), and its key."""
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed (apt-get install openssl)", pytrace=False)
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    r = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)], timeout=60)
    assert r.returncode == 0, r
    return {"cert": str(cert), "key": str(key)}


def test_tls_is_verified_by_default_and_a_ca_file_makes_it_work(cloud, mounted, self_signed):
    qd, _ = cloud
    proxy = Proxy(qd, tls=self_signed)
    try:
        # the system store does not know this certificate: a TLS error, said
        bad = mounted(qd, proxy, expect=[r"TLS", r"cannot reach"])
        assert errno_of(os.listdir, bad.path("sandboxes"), timeout=40) == 5
        assert re.search(r"TLS with https://127\.0\.0\.1:\d+/api\S* failed", bad.log_text())
        assert bad.read("status").count("reachable no") == 1
        # nothing got past the handshake
        assert proxy.since() == []

        good = mounted(qd, proxy, fs_options=[f"ca_file={self_signed['cert']}"])
        create_sandbox(good, "tls1")
        good.sh("echo secret > sandboxes/tls1/files/home/daytona/s")
        assert good.sh("cat sandboxes/tls1/files/home/daytona/s").stdout == "secret\n"
        recs = proxy.since()
        assert any(r.path.startswith("/tb1/toolbox/") for r in recs)
        check_common_headers(recs, qd.token)
    finally:
        proxy.close()


@pytest.mark.parametrize("option", ["insecure", "ssl_verify=0", "no_verify", "tls_verify=no",
                                    "ssl_no_verify"])
def test_no_option_turns_verification_off(cloud, tmp_path, option):
    qd, proxy = cloud
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAYTONA_")}
    env["DAYTONA_API_KEY"] = qd.token
    r = run([quaverfs_bin(), "-f", "-o", f"api_url={proxy.api_url}", "-o", option, str(mnt)],
            env=env, timeout=20)
    assert r.returncode != 0, r
    assert "unknown option" in r.stderr or option.split("=")[0] in r.stderr, r
    help_text = run([quaverfs_bin(), "--help"], timeout=20).stdout
    assert not re.search(r"insecure|no.?verify|verify=", help_text)


def test_a_missing_ca_file_is_refused_before_mounting(cloud, tmp_path):
    qd, proxy = cloud
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAYTONA_")}
    env["DAYTONA_API_KEY"] = qd.token
    r = run([quaverfs_bin(), "-f", "-o", f"api_url={proxy.api_url}", "-o",
             f"ca_file={tmp_path}/nope.pem", str(mnt)], env=env, timeout=20)
    assert r.returncode != 0
    assert "ca_file" in r.stderr and "No such file" in r.stderr
    assert proxy.since() == []
