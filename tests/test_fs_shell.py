"""quaverfs under the shell idioms people use (ls -l, globs, for loops, grep,
find, stat, tree), file-manager probes, statfs, caching and the cost of a
listing, all counted in quaverd's debug log (fs-layout.md)."""

import errno
import math
import re
import os
import shutil
import stat as statmod
import signal
import tempfile
import time
from pathlib import Path

import pytest

from fsmount import *  # noqa: F401,F403

UID, GID = os.getuid(), os.getgid()
NAMES = ["s1", "s2", "s3"]

# modes from fs-layout.md "General rules"
SANDBOX_NODES = {
    "state": 0o644, "error": 0o444, "id": 0o444, "info.json": 0o444, "autostop": 0o644,
    "autoarchive": 0o644, "autodelete": 0o644, "resources": 0o444, "snapshot": 0o644,
    "labels": 0o755, "env": 0o755, "ports": 0o755,
}
ROOT_NODES = {
    "sandboxes": 0o755, "volumes": 0o755, "snapshots": 0o755, "status": 0o444,
    "defaults": 0o644, "control": 0o644, "error": 0o444,
}


# Not control values: the sandbox's own filesystem (all of /usr among it,
# covered by test_files_*) and the stream nodes of commands and terminals
# (test_fs_runs, test_fs_terms), whose reads wait for output.
STREAM_DIRS = {"files", "runs", "terminals"}
STREAM_FILES = {"pty"}


def control_walk(top):
    """os.walk of the mount's control nodes only (see STREAM_DIRS)."""
    for dirpath, dirnames, filenames in os.walk(top):
        if os.path.basename(os.path.dirname(dirpath)) == "sandboxes":
            dirnames[:] = [d for d in dirnames if d not in STREAM_DIRS]
            filenames[:] = [f for f in filenames if f not in STREAM_FILES]
        yield dirpath, dirnames, filenames


@pytest.fixture(scope="module")
def shell(tmp_path_factory, request):
    """One mount whose three started sandboxes the tests only read (and
    s3's labels, which test_label_idioms puts back)."""
    def setup(m):
        m.sh("echo 'create sandbox s1 language=python env=A=b' > control && "
             "mkdir sandboxes/s2 sandboxes/s3")
    yield from mount_session(tmp_path_factory.mktemp("shell"), request, setup)


def test_ls_l(shell):
    r = shell.sh("ls -ln sandboxes")
    lines = [line.split() for line in r.stdout.splitlines() if not line.startswith("total")]
    assert [f[-1] for f in lines] == NAMES
    for f in lines:
        assert f[0].startswith("drwxr-xr-x"), f
        assert (f[2], f[3]) == (str(UID), str(GID)), f
    assert r.stderr == ""

    r = shell.sh("ls -l sandboxes/s1")
    modes = {f[-1]: f[0] for f in (line.split() for line in r.stdout.splitlines())
             if len(f) > 2}
    for node, mode in SANDBOX_NODES.items():
        assert node in modes, f"{node} missing from ls -l: {r.stdout}"
        want = ("d" if mode == 0o755 else "-") + statmod.filemode(mode)[1:]
        assert modes[node].startswith(want), (node, modes[node])

    r = shell.sh("ls -l")
    modes = {f[-1]: f[0] for f in (line.split() for line in r.stdout.splitlines())
             if len(f) > 2}
    for node, mode in ROOT_NODES.items():
        want = ("d" if mode == 0o755 else "-") + statmod.filemode(mode)[1:]
        assert modes.get(node, "").startswith(want), (node, modes.get(node))


def test_cat_star_state(shell):
    r = shell.sh("cat */state", cwd="sandboxes")
    assert r.stdout == "started\n" * 3


def test_find_maxdepth_2(shell):
    r = shell.sh("find sandboxes -maxdepth 2")
    assert r.stderr == ""
    found = set(r.stdout.splitlines())
    want = {"sandboxes"} | {f"sandboxes/{n}" for n in NAMES}
    want |= {f"sandboxes/{n}/{node}" for n in NAMES for node in SANDBOX_NODES}
    assert want <= found, sorted(want - found)
    depth1 = {p for p in found if p.count("/") == 1}
    assert depth1 == {f"sandboxes/{n}" for n in NAMES}, "ids or probes listed"


def test_stat_and_true_sizes(shell):
    r = shell.sh("stat -c '%n %u %g %a %F' status defaults control error sandboxes/s1/state "
                 "sandboxes/s1/labels")
    rows = [line.split(" ", 4) for line in r.stdout.splitlines()]
    for name, uid, gid, mode, kind in rows:
        assert (int(uid), int(gid)) == (UID, GID), name
        want = ROOT_NODES.get(name) or SANDBOX_NODES[name.split("/")[-1]]
        assert int(mode, 8) == want, name
        assert kind == ("directory" if want == 0o755 else "regular file"), name

    # control files report their true size: stat's size is what cat gives
    r = shell.sh('for f in * sandboxes/s1/* sandboxes/s1/labels/* sandboxes/s1/env/*; do '
                 '[ -f "$f" ] && [ "${f##*/}" != pty ] && echo "$f $(stat -c %s "$f") $(cat "$f" | wc -c)"; done; true')
    rows = [line.split() for line in r.stdout.splitlines()]
    names = {row[0] for row in rows}
    assert {"status", "defaults", "control", "error", "sandboxes/s1/state",
            "sandboxes/s1/info.json", "sandboxes/s1/labels/code-toolbox-language"} <= names
    for name, size, length in rows:
        assert size == length, f"{name}: stat says {size} bytes, cat gives {length}"
        assert int(length) > 0, f"{name} is empty (every value ends with a newline)"


def test_every_value_ends_with_a_newline(shell):
    def contents():
        out = {}
        for dirpath, dirnames, filenames in control_walk(shell.mnt):
            names = filenames + (["3000"] if dirpath.endswith("/ports") else [])
            for n in names:
                with open(os.path.join(dirpath, n), "rb") as f:
                    out[os.path.relpath(os.path.join(dirpath, n), shell.mnt)] = f.read()
        return out
    files = call(contents)
    assert len(files) > 30
    bad = {p: v for p, v in files.items() if not v.endswith(b"\n")}
    assert not bad, bad


def test_truncate_is_a_no_op(shell):
    autostop = shell.read("sandboxes/s1/autostop")
    r = shell.sh("truncate -s 0 sandboxes/s1/state defaults && : > sandboxes/s1/autostop && "
                 "cat sandboxes/s1/state defaults")
    assert r.stdout == "started\nlanguage=python\n"
    assert shell.qd.get("sandbox", "s1")["state"] == "started"
    assert shell.read("sandboxes/s1/autostop") == autostop


def test_tree(shell):
    r = shell.sh("tree -a --noreport -I files .")
    assert r.stderr == ""
    out = r.stdout
    for word in ("sandboxes", "volumes", "snapshots", "status", "s1", "s2", "s3", "state",
                 "labels", "code-toolbox-language", "info.json"):
        assert word in out, word


def test_owners_are_mounting_user(shell):
    def walk():
        seen = []
        for dirpath, dirnames, filenames in control_walk(shell.mnt):
            for n in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, n))
                seen.append((os.path.join(dirpath, n), st.st_uid, st.st_gid))
        return seen
    seen = call(walk)
    assert len(seen) > 30
    wrong = [s for s in seen if (s[1], s[2]) != (UID, GID)]
    assert not wrong, wrong


def test_owners_are_a_non_root_mounting_user():
    """Mounted by nobody: every node belongs to nobody, as nobody sees it
    (root itself may not enter another user's mount without allow_other)."""
    # Debian's udev rule makes /dev/fuse 0666; some containers leave it 0600.
    # As root, give it Debian's mode for the test and put it back afterwards.
    fuse_mode = os.stat("/dev/fuse").st_mode & 0o777
    if fuse_mode & 0o006 != 0o006:
        if os.geteuid() != 0:
            pytest.fail("/dev/fuse is not open to other users and we are not root")
        os.chmod("/dev/fuse", 0o666)
    try:
        _mount_as_nobody_and_check_owners()
    finally:
        os.chmod("/dev/fuse", fuse_mode)


def _mount_as_nobody_and_check_owners():
    base = Path(tempfile.mkdtemp(prefix="quaverfs-user-"))
    os.chmod(base, 0o755)
    cache = base / "cache"  # nobody's own cache dir, as a real user has one in $HOME
    cache.mkdir()
    os.chown(cache, 65534, 65534)
    m = Mount(base, user=(65534, 65534), env={"XDG_CACHE_HOME": str(cache), "HOME": str(base)})
    try:
        m.start()
        r = m.sh("mkdir sandboxes/u1 && find . -path '*/sandboxes/*/files' -prune -o -exec stat -c '%u %g %n' {} +")
        rows = [line.split(" ", 2) for line in r.stdout.splitlines()]
        assert len(rows) > 15 and any(n == "./sandboxes/u1/state" for _, _, n in rows)
        wrong = [row for row in rows if row[:2] != ["65534", "65534"]]
        assert not wrong, wrong
    finally:
        problems = m.finish()
        shutil.rmtree(base, ignore_errors=True)
    assert not problems, problems


def test_label_idioms(shell):
    r = shell.sh("echo v > sandboxes/s3/labels/k && cat sandboxes/s3/labels/k && "
                 "ls sandboxes/s3/labels")
    assert r.stdout.splitlines()[0] == "v"
    assert "k" in r.stdout.splitlines()[1:]
    assert shell.qd.get("sandbox", "s3")["labels"].get("k") == "v"
    r = shell.sh("rm sandboxes/s3/labels/k && ls sandboxes/s3/labels")
    assert "k" not in r.stdout.splitlines()
    assert "k" not in shell.qd.get("sandbox", "s3")["labels"]


def test_file_manager_probes_are_local(shell):
    m = shell
    dirs = [".", "sandboxes", "volumes", "snapshots", "sandboxes/s1"]
    for d in dirs:
        m.listdir(d)  # warm: the probes below are the only new names
    mark = m.qd.log_mark()
    got = {}
    for d in dirs:
        for name in PROBE_NAMES:
            got[f"{d}/{name}"] = errno_of(os.lstat, m.path(d, name))
    reqs = m.qd.requests_since(mark)
    assert all(e == errno.ENOENT for e in got.values()), got
    assert reqs == [], f"probes caused requests: {reqs}"
    r = m.sh("ls -a . sandboxes")
    for name in PROBE_NAMES:
        assert name not in r.stdout.split()
    # so no object can have such a name
    before = m.qd.view()
    for name in ("Desktop.ini", "autorun.inf", ".directory"):
        assert errno_of(os.mkdir, m.path("sandboxes", name)) == errno.EINVAL, name
        assert errno_of(os.mkdir, m.path("volumes", name)) == errno.EINVAL, name
        m.expect_fs_log(re.escape(name))
    assert m.qd.view() == before


# ---- tests that change things: a fresh mount each --------------------------

def test_for_loop_stop_and_grep(mount):
    m = mount
    m.sh("mkdir sandboxes/a sandboxes/b sandboxes/c")
    m.sh("for s in sandboxes/*; do echo stop > $s/state; done")
    r = m.sh("grep -l stopped sandboxes/*/state")
    assert r.stdout.splitlines() == [f"sandboxes/{n}/state" for n in "abc"]
    assert [m.qd.get("sandbox", n)["state"] for n in "abc"] == ["stopped"] * 3
    m.sh("echo start > sandboxes/b/state")
    r = m.sh("grep -l stopped sandboxes/*/state")
    assert r.stdout.splitlines() == ["sandboxes/a/state", "sandboxes/c/state"]
    r = m.sh("grep -c started sandboxes/*/state")
    assert r.stdout.splitlines() == ["sandboxes/a/state:0", "sandboxes/b/state:1",
                                     "sandboxes/c/state:0"]


def test_statfs_never_touches_the_network(mount):
    m = mount
    m.sh("ls sandboxes")
    os.kill(m.qd.pid(), signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        st = call(os.statvfs, m.mnt, timeout=5)
        assert time.monotonic() - t0 < 1.0
        assert st.f_bsize > 0
        r = m.sh("stat -f .", timeout=5)
        assert r.elapsed < 1.0, r
        r = m.sh("df -P .", timeout=5)
        assert r.elapsed < 1.0, r
        assert str(m.mnt) in r.stdout
    finally:
        os.kill(m.qd.pid(), signal.SIGCONT)


@pytest.mark.slow
def test_ls_l_of_200_sandboxes_is_one_list_walk(mount):
    m, qd = mount, mount.qd
    names = [f"box{i:03d}" for i in range(200)]
    qd.create_many(names)
    m.write("control", "flush")
    mark = qd.log_mark()
    r = m.sh("ls -l sandboxes/")
    reqs = qd.requests_since(mark)
    lines = [line for line in r.stdout.splitlines() if not line.startswith("total")]
    assert [line.split()[-1] for line in lines] == names
    walks = [p for meth, p in reqs if meth == "GET" and p.split("?")[0] == "/api/sandbox"]
    per_sandbox = [(meth, p) for meth, p in reqs if p.startswith("/api/sandbox/")]
    assert 1 <= len(walks) <= math.ceil(200 / 100) + 1, reqs
    assert per_sandbox == [], f"{len(per_sandbox)} per-sandbox requests: {per_sandbox[:5]}"


def test_own_changes_are_seen_at_once(mount):
    m = mount
    m.sh("mkdir sandboxes/c1")
    r = m.sh("cd sandboxes/c1 && cat state && stat -c %s state && echo stop > state && "
             "cat state && stat -c %s state && echo start > state && cat state")
    assert r.stdout.splitlines() == ["started", "8", "stopped", "8", "started"]
    r = m.sh("echo stop > sandboxes/c1/state; stat -c %s sandboxes/c1/state; "
             "echo archive > sandboxes/c1/state; stat -c %s sandboxes/c1/state")
    assert r.stdout.splitlines() == ["8", "9"]  # "stopped\n", "archived\n"
    r = m.sh("mkdir sandboxes/c2 && ls sandboxes && rmdir sandboxes/c2 && ls sandboxes")
    assert r.stdout.splitlines() == ["c1", "c2", "c1"]
    before = m.sh("ls sandboxes/c1/labels").stdout.split()
    r = m.sh("cd sandboxes/c1/labels && echo v > k && ls")
    assert r.stdout.split() == sorted(before + ["k"])
    r = m.sh("cd sandboxes/c1/labels && rm k && ls")
    assert r.stdout.split() == before


def wait_until(pred, limit):
    """Polls @pred; returns the seconds it took (or None past @limit + 1 s)."""
    t0 = time.monotonic()
    while True:
        t = time.monotonic() - t0
        if pred():
            return t
        if t > limit + 1.0:
            return None
        time.sleep(0.05)


def test_created_elsewhere_appears_within_2s(mount):
    m, qd = mount, mount.qd
    m.sh("mkdir sandboxes/mine")
    assert m.listdir("sandboxes") == ["mine"]  # now cached
    qd.create_sandbox("theirs")
    took = wait_until(lambda: "theirs" in m.listdir("sandboxes"), 2.0)
    assert took is not None and took <= 2.0, f"took {took}"
    assert m.read("sandboxes/theirs/state") == "started\n"


def test_deleted_elsewhere_disappears_within_2s(mount):
    m, qd = mount, mount.qd
    m.sh("mkdir sandboxes/doomed sandboxes/kept")
    sid = m.read("sandboxes/doomed/id").strip()
    assert m.read("sandboxes/doomed/state") == "started\n"  # now cached
    assert m.listdir("sandboxes") == ["doomed", "kept"]
    status, data = qd.request("DELETE", f"/sandbox/{sid}")
    assert status == 200, data
    deadline = time.monotonic() + 5
    while qd.get("sandbox", sid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)

    def gone():
        return ("doomed" not in m.listdir("sandboxes")
                and errno_of(os.lstat, m.path("sandboxes", "doomed")) == errno.ENOENT
                and m.errno_read("sandboxes/doomed/state") == errno.ENOENT
                and errno_of(os.lstat, m.path("sandboxes", "doomed", "id")) == errno.ENOENT)
    took = wait_until(gone, 2.0)
    assert took is not None and took <= 2.0, f"took {took}"
    assert m.listdir("sandboxes") == ["kept"]
