"""Helpers for the toolbox suites (test_toolbox_*.py): a client for one
sandbox's toolbox base ({toolboxProxyUrl}/{id}), multipart bodies built and
parsed by hand (so the tests see the bytes on the wire), and streaming
uploads and downloads that never hold a large file in memory."""

import hashlib
import http.client
import json
import os
import re
import threading
import time
import urllib.parse

from helpers.daytona import create_sandbox


class Toolbox:
    def __init__(self, q, dto):
        self.q = q
        self.dto = dto
        self.id = dto["id"]
        self.base = urllib.parse.urlsplit(dto["toolboxProxyUrl"].rstrip("/")).path + "/" + self.id

    @property
    def root(self):
        """The sandbox's root on the host (what the sandbox itself can write)."""
        return self.q.state_dir / "sandboxes" / self.id / "root"

    def url(self, route, **params):
        query = urllib.parse.urlencode(params)
        return self.base + "/" + route + ("?" + query if query else "")

    def call(self, method, route, params=None, json=None, body=None, headers=None, **kw):
        return self.q.request_path(method, self.url(route, **(params or {})), json=json,
                                   body=body, headers=headers, **kw)

    def ok(self, method, route, params=None, expect=200, **kw):
        r = self.call(method, route, params, **kw)
        assert r.status == expect, f"{method} {route} {params}: expected {expect}, got {r.status} {r.data!r}"
        return r

    def info(self, path):
        return self.ok("GET", "files/info", {"path": path}).data

    def ls(self, path):
        return {e["name"]: e for e in self.ok("GET", "files", {"path": path}).data}

    def upload(self, path, data, expect=200):
        """upload-v2 with a raw body."""
        return self.ok("POST", "files/upload-v2", {"path": path}, expect=expect, body=data,
                       headers={"Content-Type": "application/octet-stream"})

    def download(self, path, expect=200, headers=None):
        r = self.call("GET", "files/download", {"path": path}, headers=headers)
        assert r.status == expect, f"download {path}: expected {expect}, got {r.status} {r.data!r}"
        return r


def sandbox_toolbox(q, **body):
    return Toolbox(q, create_sandbox(q, **body))


def assert_daemon_error(resp, status, code=None):
    """The daemon's error shape (daytona-api.md 1.3)."""
    assert resp.status == status, f"expected {status}, got {resp.status}: {resp.data!r}"
    body = resp.data
    assert isinstance(body, dict), f"error body is not JSON: {body!r}"
    for key in ("statusCode", "message", "code", "timestamp", "path", "method"):
        assert key in body, f"{key} missing from {body}"
    assert body["statusCode"] == status
    assert body["message"].strip()
    if code:
        assert body["code"] == code, body
    return body


# ---- multipart ------------------------------------------------------------------------


def multipart(fields, boundary="quaverd-test-boundary"):
    """fields: [(name, value bytes/str, filename or None)] -> (content type, body)."""
    out = []
    for name, value, filename in fields:
        if isinstance(value, str):
            value = value.encode()
        disp = f'form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out.append(f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode())
        if filename is not None:
            out.append(b"Content-Type: application/octet-stream\r\n")
        out.append(b"\r\n" + value + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(out)


def parse_bulk_download(resp):
    """The parts of a bulk-download answer: [(field, filename, headers, data)]."""
    ctype = resp.headers.get("content-type", "")
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    assert ctype.startswith("multipart/form-data") and m, ctype
    delim = b"--" + m.group(1).encode()
    raw = resp.raw
    assert raw.startswith(delim), raw[:100]
    parts = []
    pos = 0
    while True:
        assert raw[pos:pos + len(delim)] == delim
        pos += len(delim)
        if raw[pos:pos + 2] == b"--":
            break
        assert raw[pos:pos + 2] == b"\r\n"
        head_end = raw.index(b"\r\n\r\n", pos)
        headers = {}
        for line in raw[pos + 2:head_end].decode().split("\r\n"):
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        start = head_end + 4
        length = int(headers["content-length"])
        data = raw[start:start + length]
        assert raw[start + length:start + length + 2] == b"\r\n"
        pos = start + length + 2
        disp = headers["content-disposition"]
        name = re.search(r'name="([^"]*)"', disp).group(1)
        fn = re.search(r'filename="((?:[^"\\]|\\.)*)"', disp).group(1)
        fn = re.sub(r"\\(.)", r"\1", fn)
        parts.append((name, fn, headers, data))
    return parts


# ---- streaming ------------------------------------------------------------------------


def pattern_chunks(total, chunk=1 << 20, seed=b"quaverd"):
    """Deterministic pseudo-random bytes, generated a chunk at a time."""
    block = hashlib.sha512(seed).digest() * (chunk // 64)
    sent = 0
    i = 0
    while sent < total:
        n = min(chunk, total - sent)
        # A per-chunk prefix keeps chunks distinct (no accidental dedup).
        head = i.to_bytes(8, "little")
        yield (head + block[8:])[:n]
        sent += n
        i += 1


def stream_upload(q, tb, path, total, chunks, route="files/upload-v2", content_type=None,
                  on_progress=None, timeout=120):
    """Sends @total bytes from the iterable @chunks as one request body
    (Content-Length, not chunked). Returns (status, data, seconds)."""
    conn = http.client.HTTPConnection(q.host, q.port, timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.putrequest("POST", tb.url(route, path=path))
        conn.putheader("Authorization", "Bearer " + q.token)
        conn.putheader("Content-Type", content_type or "application/octet-stream")
        conn.putheader("Content-Length", str(total))
        conn.endheaders()
        sent = 0
        for c in chunks:
            conn.send(c)
            sent += len(c)
            if on_progress:
                on_progress(sent)
        resp = conn.getresponse()
        raw = resp.read()
        dt = time.monotonic() - t0
        try:
            data = json.loads(raw) if raw else raw
        except ValueError:
            data = raw
        return resp.status, data, dt
    finally:
        conn.close()


def stream_download_sha256(q, tb, path, timeout=120):
    """(status, sha256 hex, bytes, seconds) of a download read in pieces."""
    conn = http.client.HTTPConnection(q.host, q.port, timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.request("GET", tb.url("files/download", path=path),
                     headers={"Authorization": "Bearer " + q.token})
        resp = conn.getresponse()
        h = hashlib.sha256()
        n = 0
        while True:
            piece = resp.read(1 << 20)
            if not piece:
                break
            h.update(piece)
            n += len(piece)
        return resp.status, h.hexdigest(), n, time.monotonic() - t0
    finally:
        conn.close()


class RssWatcher:
    """Samples VmRSS of a process every few milliseconds in a thread."""

    def __init__(self, pid, interval=0.02):
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self):
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, self._sample())
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, self._sample())


def host_file_fingerprint(path):
    st = os.stat(path)
    with open(path, "rb") as f:
        return (st.st_mode, st.st_size, st.st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
