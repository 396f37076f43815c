"""A hostile Daytona API of our own, for the hostile-input suites: a small
threaded HTTP server on 127.0.0.1 that speaks just enough of the API for
quaverfs to list (daytona-api.md: GET /api/sandbox with cursors, GET
/api/sandbox/{id or name}, GET /api/volumes, GET /api/snapshots with pages)
and lets a test decide what it answers: names with '/', '..', NUL or 10 MB,
100,000 entries, pages that never end, bodies that are not JSON.

It is not quaverd and mocks nothing of ours: it plays the remote server,
which quaverfs must not trust.
"""

import json
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["HostileBackend", "sandbox_record"]


def sandbox_record(name, sid=None, **extra):
    rec = {
        "id": sid or str(uuid.uuid4()), "name": name, "organizationId": "org", "user": "daytona",
        "env": {}, "labels": {}, "public": False, "target": "us", "cpu": 1, "gpu": 0, "memory": 1,
        "disk": 3, "state": "started", "desiredState": "started", "snapshot": "daytona",
        "autoStopInterval": 15, "autoArchiveInterval": 10080, "autoDeleteInterval": -1,
        "volumes": [], "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z",
    }
    rec.update(extra)
    return rec


class HostileBackend:
    """backend.sandboxes: the records GET /api/sandbox lists (a list, or a
    callable(index) -> record with backend.total entries, and backend.find to
    look one up); page_size: items per
    page whatever the client's limit; endless: every page names a new cursor;
    raw_list: bytes sent as the list answer instead."""

    def __init__(self):
        self.sandboxes = []
        self.total = None
        self.page_size = 1000
        self.endless = False
        self.raw_list = None
        self.find = None  # callable(id or name) -> record or None, for generated listings
        self.snapshot_pages = None  # (items per page, totalPages) for a hostile snapshot list
        self.requests = []
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                backend.handle(self)

            def do_POST(self):
                backend.handle(self)

            def do_DELETE(self):
                backend.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # -- answers --

    def record(self, i):
        if callable(self.sandboxes):
            return self.sandboxes(i)
        return self.sandboxes[i]

    def count(self):
        return self.total if self.total is not None else len(self.sandboxes)

    def send(self, h, status, body, ctype="application/json"):
        if not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        try:
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def handle(self, h):
        # drain a body
        n = int(h.headers.get("Content-Length") or 0)
        if n:
            h.rfile.read(n)
        url = urllib.parse.urlsplit(h.path)
        q = urllib.parse.parse_qs(url.query)
        path = url.path.rstrip("/")
        with self.lock:
            self.requests.append((h.command, h.path))
        if h.command == "GET" and path == "/api/sandbox":
            return self.list_page(h, q)
        if h.command == "GET" and path.startswith("/api/sandbox/"):
            key = urllib.parse.unquote(path[len("/api/sandbox/"):])
            if self.find is not None:
                rec = self.find(key)
                if rec is not None:
                    return self.send(h, 200, rec)
            else:
                for i in range(self.count()):
                    rec = self.record(i)
                    if rec.get("id") == key or rec.get("name") == key:
                        return self.send(h, 200, rec)
            return self.send(h, 404, {"statusCode": 404, "message": f"Sandbox {key} not found",
                                      "error": "Not Found"})
        if h.command == "GET" and path == "/api/volumes":
            return self.send(h, 200, [])
        if h.command == "GET" and path == "/api/snapshots":
            if self.snapshot_pages:
                per, pages = self.snapshot_pages
                page = int(q.get("page", ["1"])[0])
                items = [{"id": str(uuid.uuid4()), "name": f"snap-{page}-{k}", "state": "active",
                          "imageName": "x"} for k in range(per)]
                return self.send(h, 200, {"items": items, "total": per * pages, "page": page,
                                          "totalPages": pages})
            return self.send(h, 200, {"items": [], "total": 0, "page": 1, "totalPages": 0})
        return self.send(h, 404, {"statusCode": 404, "message": f"Cannot {h.command} {path}",
                                  "error": "Not Found"})

    def list_page(self, h, q):
        if self.raw_list is not None:
            return self.send(h, 200, self.raw_list)
        start = int(q.get("cursor", ["0"])[0] or 0)
        total = self.count()
        if self.endless:
            items = [self.record(start + k) for k in range(self.page_size)]
            return self.send(h, 200, {"items": items, "nextCursor": str(start + self.page_size)})
        end = min(total, start + self.page_size)
        items = [self.record(k) for k in range(start, end)]
        nxt = str(end) if end < total else None
        # hand-built so a test's raw names (NUL, huge) go out as given
        return self.send(h, 200, {"items": items, "nextCursor": nxt})
