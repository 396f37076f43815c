"""Shared pieces of the files/ suites (issue 4, fs-layout.md "files/").

A FilesEnv is one real quaverd and one real quaverfs mount (fsmount.Mount)
with one started sandbox, plus the sandbox's toolbox API spoken directly
over HTTP (daytona-api.md section 6), so a test can compare what the mount
shows with what the sandbox holds.

Every call through the mount that could hang runs under a deadline:
@bounded(seconds) runs a whole test body in fsmount.call()'s thread, and
shell commands go through fsmount.run() with a timeout.
"""

import functools
import hashlib
import http.client
import json
import os
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest

from fsmount import call, mount_session, run  # noqa: F401 (run: for the suites)

SANDBOX = "fx"
HOME = "/home/daytona"
# fs-layout.md: names and attributes are cached for about 1 s; a change
# made elsewhere shows within 2 s.
ATTR_TIMEOUT = 1.0
VISIBLE_WITHIN = 2.0

CHUNK = 1 << 20


def bounded(timeout):
    """Runs the decorated test in fsmount.call() with a deadline, so a call
    that hangs in the mount fails the test (fsmount.Hang) instead of the run."""
    def wrap(fn):
        @functools.wraps(fn)
        def runner(*args, **kw):
            return call(fn, *args, timeout=timeout, **kw)
        return runner
    return wrap


def artifacts_dir():
    """Where screenshots go: $QUAVER_ARTIFACTS, else /tmp/quaver-artifacts."""
    d = Path(os.environ.get("QUAVER_ARTIFACTS") or "/tmp/quaver-artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---- deterministic data -------------------------------------------------------

def pattern_block(seed, index, size=CHUNK):
    """Block @index of a reproducible incompressible stream: SHAKE-256 of
    (seed, index), so a 512 MiB file is generated, written and checked in
    1 MiB steps without being held in memory."""
    return hashlib.shake_256(f"{seed}:{index}".encode()).digest(size)


def write_stream(path, seed, size, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC, fsync=False):
    """Writes @size bytes of the @seed stream to @path; returns its sha256.
    close() is checked (its error is the upload's)."""
    h = hashlib.sha256()
    fd = os.open(path, flags, 0o644)
    try:
        done = 0
        index = 0
        while done < size:
            block = pattern_block(seed, index, min(CHUNK, size - done))
            view = memoryview(block)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            h.update(block)
            done += len(block)
            index += 1
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return h.hexdigest()


def stream_sha(seed, size):
    h = hashlib.sha256()
    done = index = 0
    while done < size:
        block = pattern_block(seed, index, min(CHUNK, size - done))
        h.update(block)
        done += len(block)
        index += 1
    return h.hexdigest()


def file_sha(path):
    """sha256 and size of what read() returns for @path, in 1 MiB reads."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            h.update(b)
            size += len(b)
    return h.hexdigest(), size


def sha(data):
    return hashlib.sha256(data).hexdigest()


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Polls @predicate until it returns a true value (returned) or @timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout} s (last: {value!r})")
        time.sleep(interval)


# ---- the toolbox API, spoken directly -----------------------------------------

class Toolbox:
    """{toolboxProxyUrl}/{sandboxId}/... of one sandbox of a quaverd, with the
    Bearer token (daytona-api.md section 5)."""

    def __init__(self, qd, sandbox):
        self.qd = qd
        rec = qd.ok("GET", f"/sandbox/{sandbox}")
        self.sandbox_id = rec["id"]
        url = rec.get("toolboxProxyUrl") or qd.ok(
            "GET", f"/sandbox/{rec['id']}/toolbox-proxy-url")["url"]
        parsed = urllib.parse.urlsplit(url.rstrip("/"))
        assert parsed.hostname in ("127.0.0.1", "localhost", "::1"), url
        self.host, self.port = parsed.hostname, parsed.port
        self.base = f"{parsed.path}/{self.sandbox_id}"

    def _conn(self, timeout=60):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _headers(self, extra=None):
        h = {"Authorization": "Bearer " + self.qd.token, "X-Daytona-Source": "quaverfs-tests"}
        if extra:
            h.update(extra)
        return h

    def url(self, route, **query):
        q = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        return f"{self.base}/{route}" + (f"?{q}" if q else "")

    def request(self, method, route, body=None, headers=None, timeout=60, **query):
        """(status, raw bytes, headers) of one toolbox request."""
        conn = self._conn(timeout)
        try:
            conn.request(method, self.url(route, **query), body=body,
                         headers=self._headers(headers))
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, raw, {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def download(self, path):
        """The bytes GET /files/download?path= returns (200 required)."""
        status, raw, _ = self.request("GET", "files/download", path=path)
        assert status == 200, f"download {path}: {status} {raw[:300]!r}"
        return raw

    def download_status(self, path):
        status, raw, _ = self.request("GET", "files/download", path=path)
        return status, raw

    def download_sha(self, path, timeout=120):
        """(status, sha256, size) of a download, streamed."""
        conn = self._conn(timeout)
        try:
            conn.request("GET", self.url("files/download", path=path), headers=self._headers())
            resp = conn.getresponse()
            h = hashlib.sha256()
            size = 0
            while True:
                b = resp.read(CHUNK)
                if not b:
                    break
                h.update(b)
                size += len(b)
            return resp.status, h.hexdigest(), size
        finally:
            conn.close()

    def upload(self, path, data):
        """POST /files/upload-v2?path= with a raw body (the newer daemon's form)."""
        status, raw, _ = self.request("POST", "files/upload-v2", body=data,
                                      headers={"Content-Type": "application/octet-stream"},
                                      path=path)
        assert status in (200, 201), f"upload {path}: {status} {raw[:300]!r}"
        return raw

    def info(self, path):
        """(status, FileInfo or the error body) of GET /files/info?path=."""
        status, raw, _ = self.request("GET", "files/info", path=path)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def listing(self, path):
        status, raw, _ = self.request("GET", "files", path=path)
        assert status == 200, f"list {path}: {status} {raw[:300]!r}"
        return json.loads(raw)

    def delete(self, path, recursive=False):
        q = {"path": path}
        if recursive:
            q["recursive"] = "true"
        status, raw, _ = self.request("DELETE", "files", **q)
        assert status in (200, 204), f"delete {path}: {status} {raw[:300]!r}"


# ---- one mount with one started sandbox ----------------------------------------

class FilesEnv:
    def __init__(self, mount, sandbox=SANDBOX):
        self.m = mount
        self.qd = mount.qd
        self.sandbox = sandbox
        self.tb = Toolbox(mount.qd, sandbox)
        self.sandbox_id = self.tb.sandbox_id
        self.files = mount.path("sandboxes", sandbox, "files")
        self.home = self.files / HOME.lstrip("/")
        # the sandbox's own tree on the host (doc/quaverd.md state dir)
        self.storage = self.qd.state_dir / "sandboxes" / self.sandbox_id / "root"

    def mount_path(self, vpath):
        """The path under files/ of the sandbox path @vpath."""
        return self.files / vpath.lstrip("/")

    def vpath(self, path):
        """The sandbox path of @path under files/."""
        return "/" + str(Path(path).relative_to(self.files))

    def flush(self):
        """fs-layout.md: `flush` in the root control node drops every cache."""
        self.m.write("control", "flush\n")


def create_sandbox(m, name=SANDBOX, options=""):
    m.sh(f"echo 'create sandbox {name} {options}' > control")


def files_session(base, request=None, sandbox=SANDBOX, options="", **mount_kw):
    """Generator for module fixtures: a started Mount with sandbox @sandbox,
    as a FilesEnv; torn down and log-checked by fsmount.mount_session."""
    env = {}

    def setup(m):
        create_sandbox(m, sandbox, options)
        env["env"] = FilesEnv(m, sandbox)

    for _m in mount_session(base, request, setup, **mount_kw):
        yield env["env"]


# ---- a directory to run the same thing in twice --------------------------------

class Root:
    """One place a behaviour test runs in: a local temp directory (the
    control) or a directory under files/home/daytona on the mount."""

    def __init__(self, kind, path, env=None):
        self.kind = kind
        self.path = Path(path)
        self.env = env

    @property
    def on_mount(self):
        return self.kind == "files"

    def __truediv__(self, other):
        return self.path / other

    def __str__(self):
        return str(self.path)

    def __repr__(self):
        return f"Root({self.kind}: {self.path})"


def make_root(kind, env, tmp_path, name):
    """A fresh empty directory of @kind for test @name."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
    if kind == "local":
        p = tmp_path / "local" / safe
        p.mkdir(parents=True)
        return Root("local", p)
    p = env.home / safe
    call(lambda: (shutil.rmtree(p) if p.exists() else None, p.mkdir(parents=True)))
    return Root("files", p, env)


ROOT_KINDS = ["local", "files"]


@pytest.fixture(params=ROOT_KINDS)
def root(request, tmp_path):
    """A fresh directory, once local (the control) and once on files/;
    the module must define a `fenv` fixture (FilesEnv)."""
    env = request.getfixturevalue("fenv") if request.param == "files" else None
    return make_root(request.param, env, tmp_path, request.node.originalname)
