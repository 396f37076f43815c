"""bench/ctlproc.py: the control-plane, process and resource workloads of issue 8
(imported by bench/run; each phase runs in a child process that bench/run can kill).

Control plane, through a quaverfs mount: mkdir-to-started (median, p95),
20 concurrent mkdirs, `ls -l sandboxes/` and `cat sandboxes/*/state` with
1,000 sandboxes, cold and warm, with quaverd's requests per listing counted
from its request log.

Processes, through the mount's nodes (fs-layout.md: sandboxes/NAME/runs/,
pty, terminals/) when this quaverfs has them, else against quaverd's toolbox
API directly (REST and websockets; the table says which): mkdir-to-first-
command, first output of a new run, pty echo round trip, pty throughput
(cat of 100 MB), 50 MB of command output.

Every measurement is checked (the output it must give) before it counts.
"""

import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
import wsclient  # noqa: E402  (the tests' stdlib websocket client)

FLEET = 1000          # sandboxes for the listing workloads
CREATE_SAMPLES = 50   # mkdir-to-started samples
CONCURRENT = 20       # concurrent creates
PTY_KEYS = 200        # keystrokes for the echo round trip
PTY_BYTES = 100_000_000
BIG_OUTPUT = 50_000_000
OUT_LINE = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLM\n"  # 50 bytes


def emit(**rec):
    """One result line for bench/run: workload, tool, samples (seconds or MB/s)..."""
    print(json.dumps(rec), flush=True)


def pct(samples, p):
    s = sorted(samples)
    if not s:
        return None
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(samples):
    return {"median": statistics.median(samples), "p95": pct(samples, 95),
            "p99": pct(samples, 99), "n": len(samples)}


# ------------------------------------------------------------ quaverd API


class Api:
    """quaverd's REST API over keep-alive HTTP/1.1, one connection per thread."""

    def __init__(self, state_dir):
        with open(os.path.join(state_dir, "url")) as f:
            url = f.read().strip()
        with open(os.path.join(state_dir, "token")) as f:
            self.token = f.read().strip()
        hostport = url.split("//", 1)[1].split("/", 1)[0]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.local = threading.local()

    def conn(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = http.client.HTTPConnection(self.host, self.port, timeout=120)
        return c

    def req(self, method, path, body=None):
        """(status, parsed JSON or raw bytes) of METHOD /path (path starts with /api or
        /toolbox)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            c = self.conn()
            try:
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                raw = r.read()
                break
            except (http.client.HTTPException, ConnectionError):
                c.close()
                self.local.c = None
                if attempt == 2:
                    raise
        try:
            return r.status, json.loads(raw) if raw else None
        except ValueError:
            return r.status, raw

    def ok(self, method, path, body=None):
        status, data = self.req(method, path, body)
        if status // 100 != 2:
            raise AssertionError(f"{method} {path}: {status} {str(data)[:200]}")
        return data

    def ws(self, path, protocols=None):
        return wsclient.connect(self.port, path, token=self.token, protocols=protocols,
                                timeout=60)

    def execute(self, sid, command, timeout=120):
        return self.ok("POST", f"/toolbox/{sid}/process/execute",
                       {"command": command, "timeout": timeout})


class RequestLog:
    """Counts quaverd's request lines (--log-level debug) written after mark()."""

    def __init__(self, path):
        self.path = path
        self.offset = 0

    def mark(self):
        try:
            self.offset = os.path.getsize(self.path)
        except OSError:
            self.offset = 0

    def count(self, needle=""):
        n = 0
        with open(self.path, errors="replace") as f:
            f.seek(self.offset)
            for line in f:
                if " debug: " in line and needle in line and \
                        (" GET " in line or " POST " in line or " DELETE " in line):
                    n += 1
        return n


# ------------------------------------------------------------ plumbing


def drop_caches():
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def flush(mnt):
    with open(os.path.join(mnt, "control"), "w") as f:
        f.write("flush\n")


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def write_node(path, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_until_eof(fd):
    """(bytes, perf_counter() when the first byte arrived, or None)"""
    first = None
    chunks = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        if first is None:
            first = time.perf_counter()
        chunks.append(b)
    return b"".join(chunks), first


def has_process_nodes(mnt, sandbox):
    d = os.path.join(mnt, "sandboxes", sandbox)
    try:
        names = set(os.listdir(d))
    except OSError:
        return False
    return {"runs", "pty"} <= names


# ------------------------------------------------------------ control plane


def phase_create(mnt, prefix, samples=CREATE_SAMPLES, concurrent=CONCURRENT):
    """mkdir-to-started through the mount; 20 concurrent mkdirs."""
    root = os.path.join(mnt, "sandboxes")
    times = []
    for i in range(samples):
        path = os.path.join(root, f"{prefix}{i:03d}")
        t0 = time.perf_counter()
        os.mkdir(path)
        state = read_file(os.path.join(path, "state")).strip()
        times.append(time.perf_counter() - t0)
        assert state == b"started", f"{path}: state {state!r} after mkdir"
    emit(workload="mkdir-to-started", tool="quaverfs", samples=times, unit="s")

    errors = []
    barrier = threading.Barrier(concurrent)

    def one(i):
        path = os.path.join(root, f"{prefix}c{i:02d}")
        try:
            barrier.wait()
            os.mkdir(path)
            assert read_file(os.path.join(path, "state")).strip() == b"started"
        except Exception as e:  # reported below
            errors.append(f"{path}: {e}")
    threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrent)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        emit(workload=f"{concurrent} concurrent creates", tool="quaverfs", error=errors[0])
    else:
        emit(workload=f"{concurrent} concurrent creates", tool="quaverfs",
             samples=[elapsed], unit="s")


def make_fleet(state_dir, n=FLEET, threads=4, prefix="fleet"):
    """n sandboxes through quaverd's API (several connections): setup, not timed."""
    api = Api(state_dir)
    errors = []

    def work(k):
        try:
            for i in range(k, n, threads):
                api.ok("POST", "/api/sandbox", {"name": f"{prefix}{i:04d}", "env": {},
                                                "labels": {"bench": "fleet"}})
        except Exception as e:
            errors.append(str(e))
    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise AssertionError(f"creating the fleet: {errors[0]}")
    return time.perf_counter() - t0


def wait_idle(pid, cpu_below=0.05, timeout=60):
    """Waits until process @pid uses less than cpu_below of a core for 0.5 s (the
    fleet's namespaces are built in the background after each create answers)."""
    tick = os.sysconf("SC_CLK_TCK")

    def cpu():
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / tick
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        a = cpu()
        time.sleep(0.5)
        if cpu() - a < cpu_below * 0.5:
            return True
    return False


def phase_listing(mnt, reqlog, rounds):
    """ls -l sandboxes/ and cat sandboxes/*/state, cold and warm, with requests."""
    root = os.path.join(mnt, "sandboxes")
    res = {k: [] for k in ("ls -l cold", "ls -l warm", "cat state cold", "cat state warm")}
    reqs = {k: [] for k in res}

    def ls():
        t0 = time.perf_counter()
        p = subprocess.run(["ls", "-l", root], stdout=subprocess.PIPE, check=True)
        dt = time.perf_counter() - t0
        n = len(p.stdout.splitlines()) - 1
        assert n >= FLEET, f"ls -l listed {n} sandboxes, not {FLEET}+"
        return dt

    def cat():
        t0 = time.perf_counter()
        p = subprocess.run(["sh", "-c", 'cat "$1"/*/state', "sh", root],
                           stdout=subprocess.PIPE, check=True)
        dt = time.perf_counter() - t0
        lines = p.stdout.split()
        assert len(lines) >= FLEET and set(lines) <= {b"started", b"stopped"}, \
            f"cat */state gave {len(lines)} lines ({sorted(set(lines))[:3]})"
        return dt

    for _ in range(rounds):
        for what, fn in (("ls -l", ls), ("cat state", cat)):
            flush(mnt)
            drop_caches()
            reqlog.mark()
            res[f"{what} cold"].append(fn())
            reqs[f"{what} cold"].append(reqlog.count())
            reqlog.mark()
            res[f"{what} warm"].append(fn())
            reqs[f"{what} warm"].append(reqlog.count())
    for k in res:
        emit(workload=f"{k} ({FLEET})", tool="quaverfs", samples=res[k], unit="s",
             requests=max(reqs[k]))


# ------------------------------------------------------------ terminals


class NodeTerm:
    """A terminal through the mount's pty node: write = keys, read = output."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR)

    def write(self, data):
        os.write(self.fd, data)

    def read(self):
        b = os.read(self.fd, 1 << 20)
        if not b:
            raise EOFError("the terminal ended")
        return b

    def close(self):
        os.close(self.fd)


class WsTerm:
    """A terminal through quaverd's pty websocket (create-connect)."""

    def __init__(self, api, sid, pid):
        self.ws = api.ws(f"/toolbox/{sid}/process/pty/create-connect?id={pid}&cols=120&rows=40",
                         protocols=["X-Daytona-Pty-Exit-Control"])
        first = json.loads(self.ws.recv_text())
        assert first.get("status") == "connected", first
        self.api, self.sid, self.pid = api, sid, pid
        rest = self.ws.rbuf[getattr(self.ws, "rpos", 0):]
        self.buf, self.pos = bytearray(rest), 0

    def write(self, data):
        self.ws.send_binary(data)

    def read(self):
        """The payloads of all whole frames received so far (at least one): the
        stdlib client's per-frame reads are too slow for a 100 MB stream, and
        quaverd (as Daytona) closes a client that falls 256 messages behind."""
        out = []
        while not out:
            buf, pos = self.buf, self.pos
            while True:
                if len(buf) - pos < 2:
                    break
                b0, b1 = buf[pos], buf[pos + 1]
                n, hdr = b1 & 0x7F, 2
                if n == 126:
                    if len(buf) - pos < 4:
                        break
                    n, hdr = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
                elif n == 127:
                    if len(buf) - pos < 10:
                        break
                    n, hdr = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
                if len(buf) - pos < hdr + n:
                    break
                op = b0 & 0x0F
                payload = bytes(buf[pos + hdr:pos + hdr + n])
                pos += hdr + n
                if op == wsclient.OP_CLOSE:
                    self.pos = pos
                    raise EOFError(f"the terminal ended ({payload[:2].hex()} "
                                   f"{payload[2:80].decode(errors='replace')})")
                if op == wsclient.OP_PING:
                    self.ws.send_frame(wsclient.OP_PONG, payload)
                elif op == wsclient.OP_TEXT and payload.startswith(b'{"type":"control"'):
                    continue
                elif op in (wsclient.OP_BINARY, wsclient.OP_TEXT, wsclient.OP_CONT):
                    out.append(payload)
            if pos > 1 << 22:
                del buf[:pos]
                pos = 0
            self.pos = pos
            if out:
                break
            chunk = self.ws.sock.recv(1 << 22)
            if not chunk:
                raise EOFError("the terminal ended (connection closed)")
            buf += chunk
        return b"".join(out)

    def close(self):
        self.ws.close()
        self.api.req("DELETE", f"/toolbox/{self.sid}/process/pty/{self.pid}")


def read_until(term, needle, buf=b""):
    """Reads until @needle appears; returns what follows it."""
    while needle not in buf:
        buf = buf[-len(needle):] + term.read() if len(buf) > 1 << 16 else buf + term.read()
    return buf[buf.index(needle) + len(needle):]


def term_ready(term):
    """Waits for the shell: a marker echoed by a command, then its next prompt."""
    term.write(b"echo QV''READY\n")
    rest = read_until(term, b"QVREADY")
    read_until(term, b"$ ", rest)


def pty_echo(term, keys=PTY_KEYS):
    term_ready(term)
    times = []
    letters = b"abcdefghijklmnopqrstuvwxyz"
    for i in range(keys):
        ch = letters[i % 26:i % 26 + 1]
        t0 = time.perf_counter()
        term.write(ch)
        buf = term.read()
        while not buf.endswith(ch):
            buf += term.read()
        times.append(time.perf_counter() - t0)
        if i % 26 == 25:  # Ctrl-U: an empty line again; let the redraw arrive
            term.write(b"\x15echo QV''MARK\n")
            read_until(term, b"$ ", read_until(term, b"QVMARK"))
    return times


def pty_throughput(term, path, size):
    term_ready(term)
    t0 = time.perf_counter()
    term.write(f"stty -echo; cat {path}; echo QV''END\n".encode())
    got, tail = 0, b""
    while True:
        b = term.read()
        got += len(b)
        if b"QVEND" in b or b"QVEND" in tail + b[:8]:  # also when cut between reads
            break
        tail = b[-8:]
    dt = time.perf_counter() - t0
    assert got >= size, f"{got} of {size} bytes arrived ({got / dt / 1e6:.0f} MB/s), the " \
        "rest was dropped on the way"
    return dt


# ------------------------------------------------------------ processes


def attempt(workload, tool, fn, unit="s"):
    """Runs one measurement; its failure is that workload's FAIL, not the phase's."""
    try:
        samples = fn()
        emit(workload=workload, tool=tool, samples=samples, unit=unit)
    except AssertionError as e:
        emit(workload=workload, tool=tool, error=f"wrong result: {e}")
    except (OSError, EOFError, KeyError, ValueError, http.client.HTTPException,
            wsclient.HandshakeError) as e:
        emit(workload=workload, tool=tool, error=f"{type(e).__name__}: {e}"[:300])


def run_node_command(run, command):
    """Writes @command to a run node, reads its output to EOF: (output, when its first
    byte came)."""
    write_node(os.path.join(run, "command"), command)
    fd = os.open(os.path.join(run, "output"), os.O_RDONLY)
    try:
        return read_until_eof(fd)
    finally:
        os.close(fd)


def proc_nodes(mnt, sandbox, prefix, rounds, pty_file, pty_size):
    """Through runs/ and pty nodes."""
    sbdir = os.path.join(mnt, "sandboxes", sandbox)

    def first_command():
        times = []
        for i in range(rounds):
            name = f"{prefix}fc{i}"
            t0 = time.perf_counter()
            os.mkdir(os.path.join(mnt, "sandboxes", name))
            run = os.path.join(mnt, "sandboxes", name, "runs", "s")
            os.mkdir(run)
            out, _ = run_node_command(run, b"echo hi\n")
            times.append(time.perf_counter() - t0)
            assert out == b"hi\n", f"output {out[:80]!r}"
        return times
    attempt("mkdir-to-first-command", "quaverfs", first_command)

    def first_output():
        times = []
        for i in range(max(rounds, 20)):
            run = os.path.join(sbdir, "runs", f"{prefix}r{i}")
            t0 = time.perf_counter()
            os.mkdir(run)
            out, first = run_node_command(run, b"echo hi\n")
            assert first is not None, "no output"
            times.append(first - t0)
            assert out == b"hi\n", f"output {out[:80]!r}"
            code = read_file(os.path.join(run, "exit")).strip()
            assert code == b"0", f"exit {code!r}"
        return times
    attempt("first output of a new run", "quaverfs", first_output)

    def big_output():
        times = []
        for i in range(rounds):
            run = os.path.join(sbdir, "runs", f"{prefix}big{i}")
            os.mkdir(run)
            t0 = time.perf_counter()
            write_node(os.path.join(run, "command"),
                       f"yes {OUT_LINE.decode().strip()} | head -c {BIG_OUTPUT}\n".encode())
            fd = os.open(os.path.join(run, "output"), os.O_RDONLY)
            try:
                n, tail = 0, b""
                while True:
                    b = os.read(fd, 1 << 20)
                    if not b:
                        break
                    n += len(b)
                    tail = (tail + b)[-len(OUT_LINE):]
            finally:
                os.close(fd)
            times.append(time.perf_counter() - t0)
            assert n == BIG_OUTPUT, f"{n} bytes of output, not {BIG_OUTPUT}"
            assert tail == OUT_LINE, f"the output ends with {tail!r}"
        return times
    attempt("50 MB command output", "quaverfs", big_output)

    def echo():
        term = NodeTerm(os.path.join(sbdir, "pty"))
        try:
            return pty_echo(term)
        finally:
            term.close()
    attempt("pty echo round trip", "quaverfs", echo)

    def throughput():
        rates = []
        for i in range(rounds):
            term = NodeTerm(os.path.join(sbdir, "pty"))
            try:
                rates.append(pty_size / 1e6 / pty_throughput(term, pty_file, pty_size))
            finally:
                term.close()
        return rates
    attempt("pty throughput (cat 100 MB)", "quaverfs", throughput, "MB/s")


def proc_api(state_dir, sandbox_id, prefix, rounds, pty_file, pty_size):
    """The same workloads against quaverd's toolbox API directly."""
    api = Api(state_dir)

    def first_command():
        times = []
        for i in range(rounds):
            t0 = time.perf_counter()
            sb = api.ok("POST", "/api/sandbox", {"name": f"{prefix}fc{i}", "env": {},
                                                 "labels": {}})
            res = api.execute(sb["id"], "echo hi")
            times.append(time.perf_counter() - t0)
            assert res["exitCode"] == 0 and res["result"] == "hi\n", str(res)[:200]
        return times
    attempt("mkdir-to-first-command", "api", first_command)

    # A new session and a sync exec: its answer is the first output of `echo hi`.
    # (The logs follow websocket polls every 50 ms, so it would measure that.)
    def first_output():
        times = []
        for i in range(max(rounds, 20)):
            t0 = time.perf_counter()
            api.ok("POST", f"/toolbox/{sandbox_id}/process/session",
                   {"sessionId": f"{prefix}r{i}"})
            res = api.ok("POST", f"/toolbox/{sandbox_id}/process/session/{prefix}r{i}/exec",
                         {"command": "echo hi"})
            times.append(time.perf_counter() - t0)
            assert res.get("exitCode") == 0 and \
                res.get("stdout", res.get("output")) == "hi\n", str(res)[:200]
        return times
    attempt("first output of a new run", "api", first_output)

    # One execute answers with the whole output. (The logs follow websocket ends
    # early on a 50 MB output: 16 to 27 MB arrive, then the close.)
    def big_output():
        times = []
        for i in range(rounds):
            t0 = time.perf_counter()
            res = api.execute(sandbox_id,
                              f"yes {OUT_LINE.decode().strip()} | head -c {BIG_OUTPUT}")
            times.append(time.perf_counter() - t0)
            out = res["result"].encode()
            assert len(out) == BIG_OUTPUT, f"{len(out)} bytes of output, not {BIG_OUTPUT}"
            assert out.endswith(OUT_LINE), f"the output ends with {out[-20:]!r}"
        return times
    attempt("50 MB command output", "api", big_output)

    def echo():
        term = WsTerm(api, sandbox_id, f"{prefix}echo")
        try:
            return pty_echo(term)
        finally:
            term.close()
    attempt("pty echo round trip", "api", echo)

    def throughput():
        rates = []
        for i in range(rounds):
            term = WsTerm(api, sandbox_id, f"{prefix}tp{i}")
            try:
                rates.append(pty_size / 1e6 / pty_throughput(term, pty_file, pty_size))
            finally:
                term.close()
        return rates
    attempt("pty throughput (cat 100 MB)", "api", throughput, "MB/s")


def make_pty_file(api, sandbox_id, path="/tmp/qvbench-100m"):
    """A 100 MB text file inside the sandbox (base64 lines), for the throughput run."""
    raw = PTY_BYTES * 3 // 4 // 101 * 100   # base64 -w 100: 101 bytes per 75 raw ones
    res = api.execute(sandbox_id, f"head -c {raw} /dev/urandom | base64 -w 100 > {path} && "
                      f"stat -c %s {path}", timeout=120)
    assert res["exitCode"] == 0, str(res)[:200]
    return path, int(res["result"].strip())


# ------------------------------------------------------------ resources


def proc_status(pid):
    """RSS (MB), threads, fds of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == "VmRSS":
                out["rss_mb"] = int(v.split()[0]) / 1024
            elif k == "VmHWM":
                out["hwm_mb"] = int(v.split()[0]) / 1024
            elif k == "Threads":
                out["threads"] = int(v)
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


class Sampler:
    """Samples the peak RSS, fds and threads of some processes every 20 ms."""

    def __init__(self, pids):
        self.pids = pids
        self.peak = {name: {} for name in pids}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            for name, pid in self.pids.items():
                try:
                    st = proc_status(pid)
                except OSError:
                    continue
                pk = self.peak[name]
                for k, v in st.items():
                    pk[k] = max(pk.get(k, 0), v)
            self.stop.wait(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def copy_1g(src, dst_dir, pids):
    """cp of a 1 GiB file into files/ while the daemons' peaks are sampled."""
    dst = os.path.join(dst_dir, "copy-1g.bin")
    with Sampler(pids) as s:
        t0 = time.perf_counter()
        subprocess.run(["cp", src, dst], check=True)
        dt = time.perf_counter() - t0
    size = os.stat(dst).st_size
    assert size == os.stat(src).st_size, f"copied {size} bytes"
    os.unlink(dst)
    return dt, s.peak


# ------------------------------------------------------------ native pty


class NativeTerm:
    """A local bash in a pty of this machine: the floor for the pty workloads."""

    def __init__(self):
        import pty
        pid, fd = pty.fork()
        if pid == 0:
            env = dict(os.environ, PS1="$ ", TERM="xterm-256color")
            os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)
        self.pid, self.fd = pid, fd

    def write(self, data):
        os.write(self.fd, data)

    def read(self):
        try:
            b = os.read(self.fd, 1 << 20)
        except OSError:
            b = b""
        if not b:
            raise EOFError("the terminal ended")
        return b

    def close(self):
        import signal
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def make_local_pty_file(path):
    raw = PTY_BYTES * 3 // 4 // 101 * 100
    subprocess.run(["sh", "-c", f'head -c {raw} /dev/urandom | base64 -w 100 > "$1"', "sh",
                    path], check=True)
    return os.path.getsize(path)


def proc_native(rounds, path, size):
    term = NativeTerm()
    try:
        times = pty_echo(term)
    finally:
        term.close()
    emit(workload="pty echo round trip", tool="native", samples=times, unit="s")
    rates = []
    for _ in range(rounds):
        term = NativeTerm()
        try:
            rates.append(size / 1e6 / pty_throughput(term, path, size))
        finally:
            term.close()
    emit(workload="pty throughput (cat 100 MB)", tool="native", samples=rates, unit="MB/s")


def phase_main(name, cfg_path):
    """bench/run --phase NAME CFG.json: one phase in a child process."""
    with open(cfg_path) as f:
        cfg = json.load(f)
    try:
        if name == "create":
            phase_create(cfg["mnt"], cfg["prefix"], cfg.get("samples", CREATE_SAMPLES),
                         cfg.get("concurrent", CONCURRENT))
        elif name == "listing":
            phase_listing(cfg["mnt"], RequestLog(cfg["log"]), cfg["rounds"])
        elif name == "procs":
            if cfg["nodes"]:
                proc_nodes(cfg["mnt"], cfg["sandbox"], cfg["prefix"], cfg["rounds"],
                           cfg["pty_file"], cfg["pty_size"])
            else:
                proc_api(cfg["state_dir"], cfg["sandbox_id"], cfg["prefix"], cfg["rounds"],
                         cfg["pty_file"], cfg["pty_size"])
        elif name == "native":
            proc_native(cfg["rounds"], cfg["pty_file"], cfg["pty_size"])
        elif name == "copy":
            dt, peak = copy_1g(cfg["src"], cfg["dst_dir"], cfg["pids"])
            emit(workload="copy 1 GiB into files/", tool="quaverfs", samples=[dt], unit="s",
                 peak=peak)
        else:
            emit(workload=name, tool="?", error=f"no phase {name}")
    except AssertionError as e:
        emit(workload=name, tool="phase", error=f"wrong result: {e}")
    except (OSError, EOFError) as e:
        emit(workload=name, tool="phase", error=f"{type(e).__name__}: {e}")
    return 0
