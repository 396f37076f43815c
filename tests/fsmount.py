"""A real quaverfs mount on a real quaverd, driven as a shell user would.

Mount starts quaverd (a fresh state dir, --port 0 unless told, debug log to a
file) and quaverfs in the foreground on a temp mountpoint, waits (bounded)
until the kernel lists the mount, and at teardown unmounts (fusermount3 -u,
then kill), stops quaverd and reports, sshfs-style, every error or warn line
of either log that the test did not declare with expect_fs_log() /
qd.expect_log(). Tests assert what a user sees: shell output, errno.

Every call that goes through the mount from this process runs in a thread
with a deadline (call()), and every shell command in a subprocess with a
timeout, so a hanging quaverfs fails the test instead of hanging the run.

Binaries: $QUAVERFS_BIN and $QUAVERD_BIN, else build/src/fs/quaverfs and
build/src/quaverd/quaverd under the repository root.
"""

import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers.quaverd import LOG_LINE, Quaverd, QuaverdError, cloudlike_args, quaverd_bin

__all__ = [
    "Mount", "Backend", "MountError", "Hang", "call", "errno_of", "write_node", "read_node",
    "run", "free_port", "mountinfo_entry", "mount_source", "unescape_mountinfo", "clean_env", "mount_session", "make_mount", "mount",
    "PROBE_NAMES", "REQUEST_LINE", "quaverfs_bin", "quaverd_bin",
]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FS_BIN = REPO / "build" / "src" / "fs" / "quaverfs"

MOUNT_TIMEOUT = 15.0
UNMOUNT_TIMEOUT = 10.0
CALL_TIMEOUT = 60.0

# Names file managers probe; fs-layout.md: ENOENT without a request.
PROBE_NAMES = [".Trash", f".Trash-{os.getuid()}", ".hidden", "autorun.inf",
               ".xdg-volume-info", ".directory", "Desktop.ini", ".DS_Store"]

# One request in quaverd's debug log: "... GET /api/sandbox?limit=100 ..."
REQUEST_LINE = re.compile(r"\b(GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS) (/\S*)")


def quaverfs_bin():
    return os.environ.get("QUAVERFS_BIN") or str(DEFAULT_FS_BIN)


class MountError(Exception):
    pass


class Hang(AssertionError):
    """A call through the mount that did not return within its deadline."""


# ---- calls with a deadline ----------------------------------------------------

def call(fn, *args, timeout=CALL_TIMEOUT, **kw):
    """Runs fn(*args) in a daemon thread; returns its value or raises its
    exception; raises Hang when it does not return within @timeout seconds
    (the thread stays blocked until teardown kills quaverfs)."""
    result = {}

    def body():
        try:
            result["value"] = fn(*args, **kw)
        except BaseException as e:  # handed to the caller
            result["error"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise Hang(f"{getattr(fn, '__name__', fn)}{args!r} did not return in {timeout} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


def errno_of(fn, *args, timeout=CALL_TIMEOUT, **kw):
    """0 when fn(*args) succeeds, else the errno of the OSError it raised."""
    try:
        call(fn, *args, timeout=timeout, **kw)
        return 0
    except OSError as e:
        return e.errno


def write_node(path, text, create=False):
    """One write() of @text to a control file, as `echo text > path` does
    (O_TRUNC, which control files ignore; O_CREAT too with @create, for a
    new label). Raises OSError from open, write or close."""
    data = text.encode() if isinstance(text, str) else text
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | (os.O_CREAT if create else 0), 0o644)
    try:
        n = os.write(fd, data)
        assert n == len(data), f"short write to {path}: {n} of {len(data)}"
    finally:
        os.close(fd)


def read_node(path):
    with open(path, "rb") as f:
        return f.read().decode()


class Result:
    def __init__(self, args, returncode, stdout, stderr, elapsed):
        self.args = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.elapsed = elapsed

    def __repr__(self):
        return (f"<{self.args!r} exit {self.returncode} in {self.elapsed:.2f} s\n"
                f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}>")


def run(args, cwd=None, timeout=60.0, env=None, check=False, input_text=None):
    """Runs a command with its output in temp files (never a pipe a hung
    child could hold), killing it after @timeout; raises Hang then."""
    import tempfile
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.PIPE if input_text is not None
                                else subprocess.DEVNULL)
        if input_text is not None:
            proc.stdin.write(input_text.encode())
            proc.stdin.close()
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                pass
            raise Hang(f"{args!r} did not finish in {timeout} s")
        elapsed = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        res = Result(args, code, out.read().decode(errors="replace"),
                     err.read().decode(errors="replace"), elapsed)
    if check and res.returncode != 0:
        raise AssertionError(f"command failed: {res!r}")
    return res


def free_port():
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unescape_mountinfo(field):
    """The kernel writes space, tab, newline, backslash and '#' as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mountinfo_entry(path):
    """The /proc/self/mountinfo line whose mount point is @path, or None
    (the raw line, escapes and all)."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if unescape_mountinfo(line.split()[4]) == path:
                return line.rstrip("\n")
    return None


def mount_source(path):
    """The source (fsname) of the mount at @path, unescaped."""
    line = mountinfo_entry(path)
    return None if line is None else unescape_mountinfo(line.split(" - ", 1)[1].split()[1])


# ---- quaverd ----------------------------------------------------------------

class Backend(Quaverd):
    """quaverd with a fixed port when asked, request counting from the
    debug log, and the API calls the fs tests need."""

    def __init__(self, base_dir, args=(), port=0, **kw):
        super().__init__(base_dir, args=args, **kw)
        self.fixed_port = port
        # QUAVERFS_TEST_BACKEND=cloudlike; the toolbox port stays across restarts
        self.cloud_args = cloudlike_args()
        if self.cloud_args:
            self.cloud_args += ["--toolbox-port", str(free_port())]

    def command(self, extra=()):
        return [quaverd_bin(), "--state-dir", str(self.state_dir), "--port",
                str(self.fixed_port), "--log-level", "debug", "--log-file",
                str(self.log_file), *self.cloud_args, *self.args, *extra]

    def attach(self):
        """Talks to a quaverd someone else started on self.state_dir."""
        import urllib.parse
        self.url = (self.state_dir / "url").read_text().strip()
        parsed = urllib.parse.urlsplit(self.url)
        self.host, self.port = parsed.hostname, parsed.port
        self.api_path = parsed.path.rstrip("/")
        self.token = (self.state_dir / "token").read_text().strip()
        return self

    def lock_holders(self):
        """Pids of the processes that have state_dir/lock open (quaverd)."""
        lock = str(self.state_dir / "lock")
        pids = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == lock:
                            pids.append(int(pid))
                            break
                    except OSError:
                        pass
            except OSError:
                pass
        return pids

    # -- request counting --

    def log_mark(self):
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def requests_since(self, mark, settle=0.3):
        """(method, path) of each request quaverd logged after @mark."""
        time.sleep(settle)
        try:
            with open(self.log_file, "rb") as f:
                f.seek(mark)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return []
        reqs = []
        for line in text.splitlines():
            m = LOG_LINE.match(line)
            if not m or m.group(1) != "debug":
                continue
            r = REQUEST_LINE.search(m.group(2))
            if r:
                reqs.append((r.group(1), r.group(2)))
        return reqs

    # -- API --

    def list_sandboxes(self):
        items, cursor = [], None
        while True:
            q = "/sandbox?limit=100" + (f"&cursor={cursor}" if cursor else "")
            data = self.ok("GET", q)
            items += data["items"]
            cursor = data.get("nextCursor")
            if not cursor:
                return items

    def list_snapshots(self):
        items, page = [], 1
        while True:
            data = self.ok("GET", f"/snapshots?page={page}&limit=100")
            items += data["items"]
            if page >= (data.get("totalPages") or 1):
                return items
            page += 1

    def list_volumes(self):
        return self.ok("GET", "/volumes")

    def get(self, kind, name):
        """The record of a sandbox/volume/snapshot by name, or None on 404."""
        path = {"sandbox": f"/sandbox/{name}", "volume": f"/volumes/by-name/{name}",
                "snapshot": f"/snapshots/{name}"}[kind]
        status, data = self.request("GET", path)
        if status == 404:
            return None
        assert status == 200, f"GET {path}: {status} {data!r}"
        return data

    def wait_state(self, kind, name, states, timeout=20.0):
        if isinstance(states, str):
            states = (states,)
        deadline = time.monotonic() + timeout
        while True:
            rec = self.get(kind, name)
            if rec is not None and rec.get("state") in states:
                return rec
            if time.monotonic() > deadline:
                raise AssertionError(f"{kind} {name} not in {states} after {timeout} s: {rec!r}")
            time.sleep(0.05)

    def create_sandbox(self, name, wait=True, **body):
        status, data = self.request("POST", "/sandbox", json={"name": name, **body})
        assert status in (200, 201), f"POST /sandbox {name}: {status} {data!r}"
        if wait:
            return self.wait_state("sandbox", name, "started")
        return data

    def create_many(self, names, workers=8):
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda n: self.create_sandbox(n, wait=False), names))

    def create_volume(self, name):
        status, data = self.request("POST", "/volumes", json={"name": name})
        assert status in (200, 201), f"POST /volumes {name}: {status} {data!r}"
        return self.wait_state("volume", name, "ready")

    def view(self):
        """What a user of the API sees, to compare before/after a failure."""
        keep = ("id", "state", "labels", "public", "user", "cpu", "memory", "disk",
                "autoStopInterval", "autoArchiveInterval", "autoDeleteInterval", "snapshot")
        return {
            "sandboxes": {s["name"]: {k: s.get(k) for k in keep} for s in self.list_sandboxes()},
            "volumes": {v["name"]: (v["id"], v["state"]) for v in self.list_volumes()},
            "snapshots": {s["name"]: (s["id"], s["state"]) for s in self.list_snapshots()},
        }

    # -- a sandbox's storage on disk (doc/quaverd.md), since files/ is later work --

    def sandbox_root(self, sandbox_id):
        return self.state_dir / "sandboxes" / sandbox_id / "root"

    def plant(self, sandbox_id, text, rel="home/daytona/planted.txt"):
        p = self.sandbox_root(sandbox_id) / rel
        assert p.parent.is_dir(), f"{p.parent} missing: is the sandbox started?"
        p.write_text(text)
        return p

    def planted(self, sandbox_id, rel="home/daytona/planted.txt"):
        p = self.sandbox_root(sandbox_id) / rel
        try:
            return p.read_text()
        except FileNotFoundError:
            return None


# ---- quaverfs ---------------------------------------------------------------

def clean_env():
    """The environment without any Daytona setting of the caller."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DAYTONA_")}


class Mount:
    """One quaverfs process on one mountpoint.

    mode "api":      quaverd started here, quaverfs -o api_url=URL with the
                     token in DAYTONA_API_KEY (the default);
    mode "key_file": the same with the token in a 0600 file, -o key_file=;
    mode "jwt":      the same with DAYTONA_JWT_TOKEN and DAYTONA_ORGANIZATION_ID;
    mode "embedded": no key, no api_url: quaverfs -o state_dir=DIR starts
                     quaverd itself (reuse=True: we start quaverd on DIR
                     first and quaverfs must use that one).
    """

    def __init__(self, base_dir, mode="api", qd_args=(), port=0, fs_options=(), debug=False,
                 key=None, api_url=None, reuse=False, env=None, user=None):
        self.base = Path(base_dir)
        self.base.mkdir(parents=True, exist_ok=True)
        self.mnt = self.base / "mnt"
        self.mnt.mkdir(exist_ok=True)
        self.log_file = self.base / "quaverfs.log"
        self.mode = mode
        self.qd_args = list(qd_args)
        self.port = port
        self.fs_options = list(fs_options)
        self.debug = debug
        self.key = key
        self.api_url = api_url
        self.reuse = reuse
        self.extra_env = env or {}
        # (uid, gid): run quaverfs and sh() as that user (base_dir must be
        # reachable by it); this process then cannot enter the mount
        self.user = user
        self.qd = None
        self.proc = None
        self.expected = []
        self.embedded_pids = []
        self.state_dir = self.base / "quaverd" / "state"

    # -- process control --

    def command(self):
        opts = []
        if self.mode in ("api", "key_file", "jwt"):
            opts += ["-o", f"api_url={self.api_url or self.qd.url}"]
        if self.mode == "key_file":
            opts += ["-o", f"key_file={self.key_path}"]
        if self.mode == "embedded":
            opts += ["-o", f"state_dir={self.state_dir}", "-o", f"quaverd={quaverd_bin()}"]
        for o in self.fs_options:
            opts += ["-o", o]
        if self.user is None and not any(o.startswith("cache_dir=") for o in self.fs_options):
            # Each mount its own staging directory: copies a test leaves
            # unsent on purpose (kept, as fs-layout.md promises) must not be
            # reported by every later mount of the run from ~/.cache.
            opts += ["-o", f"cache_dir={self.base / 'cache'}"]
        return [*self.as_user(), quaverfs_bin(), "-d" if self.debug else "-f", *opts,
                str(self.mnt)]

    def as_user(self):
        if self.user is None:
            return []
        uid, gid = self.user
        return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]

    def environment(self):
        env = clean_env()
        env["XDG_DATA_HOME"] = str(self.base / "xdg")
        if self.mode == "api":
            env["DAYTONA_API_KEY"] = self.key if self.key is not None else self.qd.token
        if self.mode == "jwt":
            env["DAYTONA_JWT_TOKEN"] = self.key if self.key is not None else self.qd.token
            env["DAYTONA_ORGANIZATION_ID"] = (self.qd.state_dir / "organization").read_text().strip()
        env.update(self.extra_env)
        return env

    def start(self):
        if self.mode in ("api", "key_file", "jwt") or self.reuse:
            self.qd = Backend(self.base / "quaverd", args=self.qd_args, port=self.port)
            self.qd.start()
        if self.mode == "key_file":
            self.key_path = self.base / "key"
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, ((self.key or self.qd.token) + "\n").encode())
            os.close(fd)
        log = open(self.log_file, "ab")
        if self.user is not None:
            os.chown(self.mnt, *self.user)
            os.chown(self.log_file, *self.user)
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, env=self.environment())
        finally:
            log.close()
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while mountinfo_entry(self.mnt) is None:
            code = self.proc.poll()
            if code is not None:
                raise MountError(f"quaverfs exited {code} before mounting:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise MountError(f"{self.mnt} not mounted after {MOUNT_TIMEOUT} s:\n"
                                 f"{self.log_text()}")
            time.sleep(0.02)
        if self.mode == "embedded":
            if self.qd is None:
                # fs-layout.md: the quaverd quaverfs starts logs to STATE_DIR/quaverd.log
                self.qd = Backend(self.base / "quaverd", state_dir=self.state_dir,
                                  log_file=self.state_dir / "quaverd.log")
            self.qd.attach()
            self.embedded_pids = [p for p in self.qd.lock_holders()
                                  if self.qd.proc is None or p != self.qd.proc.pid]
        return self

    @property
    def mounted(self):
        return mountinfo_entry(self.mnt) is not None

    def unmount(self):
        """fusermount3 -u, then wait for quaverfs to exit; returns problems."""
        problems = []
        if self.proc is None:
            return problems
        if self.mounted:
            r = run(["fusermount3", "-u", str(self.mnt)], timeout=UNMOUNT_TIMEOUT)
            if r.returncode != 0:
                problems.append(f"fusermount3 -u failed: {r.stderr.strip()}")
                run(["fusermount3", "-uz", str(self.mnt)], timeout=UNMOUNT_TIMEOUT)
        try:
            code = self.proc.wait(UNMOUNT_TIMEOUT)
            if code != 0:
                problems.append(f"quaverfs exited {code} after fusermount3 -u")
        except subprocess.TimeoutExpired:
            problems.append(f"quaverfs still running {UNMOUNT_TIMEOUT} s after unmount")
            self.kill_fs()
        if self.mounted:
            run(["fusermount3", "-uz", str(self.mnt)], timeout=UNMOUNT_TIMEOUT)
        return problems

    def kill_fs(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.mounted:
            run(["fusermount3", "-uz", str(self.mnt)], timeout=UNMOUNT_TIMEOUT)

    def stop_embedded_quaverd(self):
        """The quaverd quaverfs started outlives the mount (it is reused by
        the next mount); stop it: SIGTERM to the pids holding its lock."""
        problems = []
        if self.qd is None:
            return problems
        own = self.qd.proc.pid if self.qd.proc is not None else None
        pids = [p for p in self.qd.lock_holders() if p != own]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        for pid in pids:
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                try:  # reap it if it is our grandchild turned child
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                time.sleep(0.05)
            if os.path.exists(f"/proc/{pid}"):
                os.kill(pid, signal.SIGKILL)
                problems.append(f"embedded quaverd {pid} ignored SIGTERM")
        return problems

    def finish(self):
        """Teardown: unmount, stop quaverd(s), check both logs."""
        problems = []
        try:
            problems += self.unmount()
        except Exception as e:
            problems.append(f"unmount: {e}")
            if self.proc is not None:
                self.kill_fs()
        if self.mode == "embedded":
            problems += self.stop_embedded_quaverd()
        if self.qd is not None:
            problems += [f"quaverd: {p}" for p in self.qd.finish()]
        problems += [f"quaverfs log: {p}" for p in self.unexpected_log_lines()]
        return problems

    # -- quaverfs log --

    def expect_fs_log(self, pattern):
        """Declares that error/warn lines matching @pattern (regex searched
        in the line) are expected in quaverfs's log."""
        self.expected.append(re.compile(pattern))

    def log_text(self):
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self):
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, mark):
        with open(self.log_file, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")

    def unexpected_log_lines(self):
        bad = []
        for line in self.log_text().splitlines():
            if not line.strip() or any(p.search(line) for p in self.expected):
                continue
            m = LOG_LINE.match(line)
            if m:
                if m.group(1) in ("error", "warn"):
                    bad.append(line)
            elif not self.debug:
                # -f: everything on stderr is quaverfs's log or a libfuse complaint
                bad.append("unparsable line: " + line)
        return bad

    # -- using the mount --

    def path(self, *parts):
        return self.mnt.joinpath(*parts)

    def sh(self, script, timeout=60.0, check=True, cwd=None):
        """bash -c @script in the mountpoint (or @cwd relative to it)."""
        where = self.mnt if cwd is None else self.mnt / cwd
        if self.user is not None:
            # root may not enter another user's mount: the cd happens as that user
            script = f"cd {shlex.quote(str(where))} && {script}"
            where = self.base
        res = run([*self.as_user(), "bash", "-c", script], cwd=where, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"bash -c {script!r} failed:\n{res!r}")
        return res

    def read(self, *parts, timeout=CALL_TIMEOUT):
        return call(read_node, self.path(*parts), timeout=timeout)

    def write(self, rel, text, timeout=CALL_TIMEOUT):
        return call(write_node, self.path(rel), text, timeout=timeout)

    def errno_write(self, rel, text, timeout=CALL_TIMEOUT, create=False):
        return errno_of(write_node, self.path(rel), text, create, timeout=timeout)

    def errno_read(self, rel, timeout=CALL_TIMEOUT):
        return errno_of(read_node, self.path(rel), timeout=timeout)

    def stat(self, rel, timeout=CALL_TIMEOUT):
        return call(os.lstat, self.path(rel), timeout=timeout)

    def listdir(self, rel, timeout=CALL_TIMEOUT):
        return sorted(call(os.listdir, self.path(rel), timeout=timeout))

    def status(self):
        """The root status node as {key: value}."""
        out = {}
        for line in self.read("status").splitlines():
            k, _, v = line.partition(" ")
            out[k] = v
        return out


class FsLogView:
    """quaverfs's log in the shape conftest.py's failure report reads
    (name, log_tail, read_stderr), so a failing test shows its tail."""

    def __init__(self, mount):
        self.mount = mount
        self.name = "quaverfs"

    def log_tail(self, lines=40):
        text = self.mount.log_text().splitlines()[-lines:]
        return "\n".join(text) + "\n"

    def read_stderr(self):
        return ""


class _Reported:
    """What conftest.py's pytest_runtest_makereport looks for on a node."""

    def __init__(self):
        self.items = []

    def add(self, mount):
        self.items.append(FsLogView(mount))
        if mount.qd is not None:
            self.items.append(mount.qd)


def report_logs(node, mount):
    """Attach @mount's logs to @node (a test item or a module) so failures
    show their last lines."""
    rep = getattr(node, "_quaverd_instances", None)
    if not isinstance(rep, _Reported):
        rep = _Reported()
        node._quaverd_instances = rep
    rep.add(mount)


def mount_session(base, request=None, setup=None, **kw):
    """Generator for fixtures (`yield from mount_session(...)`): yields a
    started Mount on which @setup(m) ran, tears it down and fails (the
    fixture, hence the test) on any problem found. With @request, failures
    show the logs' last lines."""
    m = Mount(base, **kw)
    try:
        m.start()
        if request is not None:
            report_logs(request.node, m)
        if setup is not None:
            setup(m)
    except BaseException:
        for p in m.finish():
            print("teardown after a failed setup:", p)
        raise
    yield m
    problems = m.finish()
    if problems:
        pytest.fail("teardown found problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def make_mount(tmp_path, request):
    """Factory: make_mount(**Mount kwargs) -> started Mount, torn down and
    checked when the test ends."""
    mounts = []

    def factory(**kw):
        m = Mount(tmp_path / f"m{len(mounts)}", **kw)
        mounts.append(m)
        m.start()
        report_logs(request.node, m)
        return m

    yield factory
    problems = []
    for m in reversed(mounts):
        problems += m.finish()
    if problems:
        pytest.fail("teardown found problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def mount(make_mount):
    """A fresh quaverd and quaverfs (api_url mode) for one test."""
    return make_mount()
