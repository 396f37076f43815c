"""Drive a real quaverd process over HTTP (no mocks).

One Quaverd object is one state directory and the quaverd process serving
it. The test harness (conftest.py) checks its log when the test ends: any
line at level "error" or "warn" that the test did not declare expected fails
the test, as does anything quaverd prints on stderr, or a quaverd that died
without the test killing it.
"""

import http.client
import json as jsonlib
import os
import re
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "build" / "src" / "quaverd" / "quaverd"

# Sentinel: "send the token this quaverd made".
DEFAULT = object()

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0

# "2026-11-29T17:40:00.123Z quaverd[1234] warn: message" (src/common/log.c)
LOG_LINE = re.compile(r"^\S+ \S+\[\d+\] (error|warn|info|debug): (.*)$")


def quaverd_bin():
    return os.environ.get("QUAVERD_BIN") or str(DEFAULT_BIN)


# QUAVERFS_TEST_BACKEND=cloudlike: the quaverfs suites (fsmount.Backend) run
# against quaverd's cloud-like mode (doc/quaverd.md "Cloud-like mode"): the
# toolbox on a port of its own, create/start/stop that answer creating/
# starting/stopping for a while, and injected 429/503 answers to quaverfs's
# own requests (X-Daytona-Source quaverfs; the tests' requests get none).
# QUAVERFS_CLOUDLIKE_DELAY_MS, _FAULT_RATE, _FAULT_SEED and _RETRY_AFTER tune it.
# Defaults chosen for the CI budget (the second pass of tools/test may add at
# most 4 minutes on 2 cores): 200 ms outlasts quaverfs's first two polls
# (100 + 150 ms), so every create, start and stop is seen in its transitional
# state at least once; 1 % of about 15000 requests is some 150 injected
# 429/503 per pass, each costing one 250-300 ms backoff.
# Retry-After 0 by default: the suites have deadlines of a second or two
# (op_timeout=1, "seen within 2 s"); test_cloud_protocol.py checks that a
# Retry-After of 1 s is honoured.
CLOUDLIKE = os.environ.get("QUAVERFS_TEST_BACKEND", "") == "cloudlike"


def cloudlike_args():
    """quaverd's options for the cloud-like test backend; [] when not asked."""
    if not CLOUDLIKE:
        return []
    delay = os.environ.get("QUAVERFS_CLOUDLIKE_DELAY_MS", "200")
    return ["--cloud-like", "--transition-delay", delay, "--lifecycle-delay", delay,
            "--fault-rate", os.environ.get("QUAVERFS_CLOUDLIKE_FAULT_RATE", "0.01"),
            "--fault-seed", os.environ.get("QUAVERFS_CLOUDLIKE_FAULT_SEED", "6"),
            "--fault-source", "quaverfs",
            "--fault-retry-after", os.environ.get("QUAVERFS_CLOUDLIKE_RETRY_AFTER", "0")]


class QuaverdError(Exception):
    pass


class Response(tuple):
    """(status, data) where data is the parsed JSON, or the raw bytes when
    the body is not JSON. Also carries .headers (lower-case names) and .raw."""

    def __new__(cls, status, data, headers, raw):
        self = super().__new__(cls, (status, data))
        self.status = status
        self.data = data
        self.headers = headers
        self.raw = raw
        return self


class Quaverd:
    def __init__(self, base_dir, args=(), state_dir=None, log_file=None, name="quaverd"):
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = Path(state_dir) if state_dir else self.base_dir / "state"
        self.log_file = Path(log_file) if log_file else self.base_dir / f"{name}.log"
        self.stderr_file = self.base_dir / f"{name}.stderr"
        self.args = list(args)
        self.name = name
        self.proc = None
        self.token = None
        self.url = None
        self.port = None
        self.api_path = "/api"
        self.expected_log = []
        self.killed_by_test = False
        self.exit_codes = []

    # ---- process control -------------------------------------------------

    def command(self, extra=()):
        return [quaverd_bin(), "--state-dir", str(self.state_dir), "--port", "0",
                "--log-level", "debug", "--log-file", str(self.log_file),
                *self.args, *extra]

    def _url_file_identity(self):
        try:
            st = (self.state_dir / "url").stat()
            return (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return None

    def start(self, extra=()):
        """Starts quaverd and waits (bounded) until its url file is written
        anew and the port accepts connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        before = self._url_file_identity()
        stderr = open(self.stderr_file, "ab")
        try:
            self.proc = subprocess.Popen(self.command(extra), stdin=subprocess.DEVNULL,
                                         stdout=stderr, stderr=stderr)
        finally:
            stderr.close()
        self.killed_by_test = False
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = self.proc.poll()
            if code is not None:
                self.exit_codes.append(code)
                raise QuaverdError(f"quaverd exited {code} while starting:\n"
                                   f"{self.read_stderr()}{self.log_tail()}")
            now = self._url_file_identity()
            if now is not None and now != before:
                url = (self.state_dir / "url").read_text().strip()
                if url and self._connectable(url):
                    break
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise QuaverdError(f"quaverd wrote no url file in {START_TIMEOUT} s:\n"
                                   f"{self.read_stderr()}{self.log_tail()}")
            time.sleep(0.02)
        self.url = url
        parsed = urllib.parse.urlsplit(url)
        self.host = parsed.hostname
        self.port = parsed.port
        self.api_path = parsed.path.rstrip("/")
        self.token = (self.state_dir / "token").read_text().strip()
        return self

    @staticmethod
    def _connectable(url):
        parsed = urllib.parse.urlsplit(url)
        try:
            conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=1)
            conn.connect()
            conn.close()
            return True
        except OSError:
            return False

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        """Sends @sig and waits for the process to end; returns its exit code."""
        assert self.proc is not None
        self.killed_by_test = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=STOP_TIMEOUT)
        self.exit_codes.append(code)
        return code

    def stop(self):
        """SIGTERM; quaverd must exit 0 (doc/quaverd.md)."""
        code = self.kill(signal.SIGTERM)
        if code != 0:
            how = (f"was killed by {signal.Signals(-code).name}" if code < 0
                   else f"exited {code}")
            raise QuaverdError(f"quaverd {how} instead of exiting 0 on SIGTERM:\n"
                               f"{self.read_stderr()}")
        return code

    def restart(self, extra=(), sig=None):
        """Stops quaverd (SIGTERM, or @sig such as SIGKILL) when it runs, then
        starts it again on the same state dir."""
        if self.running:
            if sig is None:
                self.stop()
            else:
                self.kill(sig)
        return self.start(extra)

    def pid(self):
        return self.proc.pid

    # ---- logs --------------------------------------------------------------

    def expect_log(self, pattern):
        """Declares that a warn or error line matching @pattern (a regex
        searched in the message) is expected in this test."""
        self.expected_log.append(re.compile(pattern))

    def log_text(self):
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def read_stderr(self):
        try:
            return self.stderr_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=30):
        text = self.log_text().splitlines()[-lines:]
        return "\n--- log tail ---\n" + "\n".join(text) + "\n" if text else ""

    def unexpected_log_lines(self):
        bad = []
        for line in self.log_text().splitlines():
            m = LOG_LINE.match(line)
            if not m:
                if line.strip():
                    bad.append("unparsable log line: " + line)
                continue
            level, msg = m.groups()
            if level in ("error", "warn") and not any(p.search(msg) for p in self.expected_log):
                bad.append(line)
        for line in self.read_stderr().splitlines():
            if line.strip() and not any(p.search(line) for p in self.expected_log):
                bad.append("stderr: " + line)
        return bad

    def finish(self):
        """Teardown: stops quaverd and returns a list of problems found."""
        problems = []
        if self.proc is not None:
            code = self.proc.poll()
            if code is not None and not self.killed_by_test:
                problems.append(f"quaverd died by itself with status {code}")
            elif code is None:
                try:
                    self.stop()
                except (QuaverdError, subprocess.TimeoutExpired) as e:
                    self.proc.kill()
                    self.proc.wait()
                    problems.append(str(e))
        problems += self.unexpected_log_lines()
        return problems

    # ---- HTTP --------------------------------------------------------------

    def request(self, method, path, json=None, body=None, headers=None, token=DEFAULT,
                timeout=REQUEST_TIMEOUT):
        """A request to the API: @path is relative to the /api base
        ("/sandbox"). Returns Response (status, json-or-bytes)."""
        return self.request_path(method, self.api_path + path, json=json, body=body,
                                 headers=headers, token=token, timeout=timeout)

    def request_url(self, method, url, **kw):
        """A request to any URL this quaverd handed out (toolbox, preview)."""
        parsed = urllib.parse.urlsplit(url)
        # the port may be the toolbox's own (cloud-like mode)
        assert parsed.hostname == self.host, url
        path = parsed.path + ("?" + parsed.query if parsed.query else "")
        return self.request_path(method, path, port=parsed.port, **kw)

    def request_path(self, method, path, json=None, body=None, headers=None, token=DEFAULT,
                     timeout=REQUEST_TIMEOUT, port=None):
        hdrs = {"Accept": "application/json", "X-Daytona-Source": "quaverfs-tests",
                "X-Daytona-SDK-Version": "0.218.0"}
        if token is DEFAULT:
            token = self.token
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        if json is not None:
            assert body is None
            body = jsonlib.dumps(json).encode()
        if body is not None:
            hdrs["Content-Type"] = "application/json"
            if isinstance(body, str):
                body = body.encode()
        if headers:
            hdrs.update(headers)
        conn = http.client.HTTPConnection(self.host, port or self.port, timeout=timeout)
        try:
            try:
                conn.request(method, path, body=body, headers=hdrs)
            except (BrokenPipeError, ConnectionResetError):
                # The server may answer (413) and close before reading a big
                # body; its answer is still there to read.
                pass
            resp = conn.getresponse()
            raw = resp.read()
            resp_headers = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        data = raw
        if raw and "json" in resp_headers.get("content-type", ""):
            try:
                data = jsonlib.loads(raw)
            except ValueError:
                data = raw
        return Response(resp.status, data, resp_headers, raw)

    def ok(self, method, path, json=None, expect=200, **kw):
        """A request that must succeed with @expect; returns the data."""
        status, data = self.request(method, path, json=json, **kw)
        if status != expect:
            text = repr(data)
            text = text if len(text) <= 300 else text[:300] + "..."
            raise AssertionError(f"{method} {path} {repr(json)[:200]}: expected {expect}, "
                                 f"got {status} {text}")
        return data


def quote(component):
    """Percent-encodes one path component."""
    return urllib.parse.quote(component, safe="")


def state_tree(state_dir):
    """What is on disk: {relative path: (size, mtime_ns)} for files and
    {relative path/: "dir"} for directories, without tmp/ (spooled bodies and
    work files) and without the log (which lives beside the state dir)."""
    state_dir = Path(state_dir)
    tree = {}
    for dirpath, dirnames, filenames in os.walk(state_dir):
        rel_dir = os.path.relpath(dirpath, state_dir)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != "tmp"]
            rel_dir = ""
        for d in dirnames:
            tree[os.path.join(rel_dir, d) + "/"] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            tree[os.path.join(rel_dir, f)] = (st.st_size, st.st_mtime_ns)
    return tree


def tree_diff(before, after):
    """A readable description of what changed between two state_tree()s."""
    lines = []
    for k in sorted(set(before) | set(after)):
        if k not in after:
            lines.append(f"removed {k}")
        elif k not in before:
            lines.append(f"added   {k}")
        elif before[k] != after[k]:
            lines.append(f"changed {k}: {before[k]} -> {after[k]}")
    return "\n".join(lines)
