"""quaverfs on bad input: each failure gets the errno fs-layout.md gives it,
its reason in the error nodes and the log, and changes nothing in the
backend (listed through the HTTP API before and after)."""

import errno
import os
import re
import time

import pytest

from fsmount import *  # noqa: F401,F403


def name_of(code):
    return errno.errorcode.get(code, str(code))


def fails_with(m, want, action, obj_error=None, sandboxes_only=False):
    """Runs @action (returns an errno), checks errno, the backend, the root
    error node (PATH: message), the object's error node and the log.
    Returns the message."""
    view = (lambda: m.qd.view()["sandboxes"]) if sandboxes_only else m.qd.view
    before = view()
    mark = m.log_mark()
    got = action()
    assert got == want, f"expected {name_of(want)}, got {name_of(got)}"
    assert view() == before, "the backend changed"
    root = m.read("error")
    assert root.endswith("\n") and ": " in root, f"root error node: {root!r}"
    msg = root.rstrip("\n").split(": ", 1)[1].strip()
    assert msg, f"no message in the root error node: {root!r}"
    if obj_error is not None:
        own = m.read(obj_error).strip()
        assert own, f"{obj_error} is empty"
        assert msg in own or own in root, f"{obj_error}: {own!r}; root error: {root!r}"
    # the same reason goes to the log; that line is expected
    m.expect_fs_log(re.escape(msg))
    log = m.log_since(mark)
    assert msg in log, f"reason {msg!r} not in the log since the failure:\n{log}"
    return msg


@pytest.fixture(scope="module")
def errs(tmp_path_factory, request):
    def setup(m):
        qd = m.qd
        m.sh("mkdir sandboxes/busy && echo 'create volume inuse' > control && "
             "echo 'create sandbox user1 volume=inuse:/v' > control")
        qd.ok("POST", "/sandbox/busy/snapshot", json={"name": "snapE"})
        qd.wait_state("snapshot", "snapE", "active")
        qd.wait_state("sandbox", "busy", "started")
        qd.create_sandbox("cold")
        qd.ok("POST", "/sandbox/cold/stop")
        qd.wait_state("sandbox", "cold", "stopped")
        qd.ok("POST", "/sandbox/cold/archive")
        qd.wait_state("sandbox", "cold", "archived")
        m.write("control", "flush\n")  # made through the API: seen at once after a flush
    yield from mount_session(tmp_path_factory.mktemp("errs"), request, setup)


# ---- the acceptance cases ---------------------------------------------------

def test_wrong_word_in_state(errs):
    m = errs
    fails_with(m, errno.EINVAL, lambda: m.errno_write("sandboxes/busy/state", "sideways\n"),
               obj_error="sandboxes/busy/error")
    assert m.read("sandboxes/busy/state") == "started\n"
    r = m.sh("echo sideways > sandboxes/busy/state", check=False)
    assert r.returncode != 0 and "Invalid argument" in r.stderr, r
    m.expect_fs_log(r"sideways")


def test_archive_of_started_sandbox(errs):
    m = errs
    fails_with(m, errno.EBUSY, lambda: m.errno_write("sandboxes/busy/state", "archive\n"),
               obj_error="sandboxes/busy/error")
    assert m.read("sandboxes/busy/state") == "started\n"
    assert m.qd.get("sandbox", "busy")["state"] == "started"


def test_recover_of_sandbox_not_in_error(errs):
    m = errs
    fails_with(m, errno.EBUSY, lambda: m.errno_write("sandboxes/busy/state", "recover"),
               obj_error="sandboxes/busy/error")


def test_mkdir_of_existing_name(errs):
    m = errs
    before = m.qd.view()
    assert errno_of(os.mkdir, m.path("sandboxes", "busy")) == errno.EEXIST
    assert errno_of(os.mkdir, m.path("volumes", "inuse")) == errno.EEXIST
    assert m.qd.view() == before
    # a name another client just took, not yet in any cache: quaverfs may
    # try the create and get the backend's 409 (a warning, expected)
    m.expect_fs_log(r"sandboxes/taken: .*already exists")
    m.qd.create_sandbox("taken")
    before = m.qd.view()
    assert errno_of(os.mkdir, m.path("sandboxes", "taken")) == errno.EEXIST
    assert m.qd.view() == before
    # through control, where quaverfs itself answers
    fails_with(m, errno.EEXIST, lambda: m.errno_write("control", "create sandbox busy\n"))
    fails_with(m, errno.EEXIST, lambda: m.errno_write("control", "create volume inuse\n"))


@pytest.mark.parametrize("bad", ["-lead", "has space", "x" * 64, "semi;colon", "bang!",
                                 "caf\u00e9", "_under"])
def test_mkdir_of_invalid_name(errs, bad):
    m = errs
    fails_with(m, errno.EINVAL, lambda: errno_of(os.mkdir, m.path("sandboxes", bad)))
    assert bad not in m.listdir("sandboxes")


def test_invalid_name_through_control(errs):
    m = errs
    fails_with(m, errno.EINVAL,
               lambda: m.errno_write("control", "create sandbox \"has space\"\n"))
    fails_with(m, errno.EINVAL, lambda: errno_of(os.mkdir, m.path("volumes", "-vol")))


def test_rmdir_of_volume_in_use(errs):
    m = errs
    fails_with(m, errno.EBUSY, lambda: errno_of(os.rmdir, m.path("volumes", "inuse")))
    assert "inuse" in m.listdir("volumes")
    assert m.read("volumes/inuse/state") == "ready\n"
    r = m.sh("rmdir volumes/inuse", check=False)
    assert r.returncode != 0 and "busy" in r.stderr.lower(), r


def test_mkdir_in_snapshots(errs):
    m = errs
    fails_with(m, errno.EPERM, lambda: errno_of(os.mkdir, m.path("snapshots", "newsnap")))
    r = m.sh("mkdir snapshots/newsnap", check=False)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r


# ---- the rest of fs-layout.md's error tables ----------------------------------

@pytest.mark.parametrize("node", ["status", "error", "sandboxes/busy/id",
                                  "sandboxes/busy/info.json", "sandboxes/busy/error",
                                  "sandboxes/busy/resources", "sandboxes/busy/ports/8080",
                                  "volumes/inuse/id", "volumes/inuse/state",
                                  "snapshots/snapE/state"])
def test_read_only_nodes_refuse_writes_even_for_root(errs, node):
    m = errs
    before = m.qd.view()
    assert m.errno_write(node, "x\n") == errno.EACCES
    assert m.qd.view() == before


def test_env_files_are_read_only(errs):
    m = errs
    m.sh("echo 'create sandbox withenv env=K=V' > control")
    before = m.qd.view()
    assert m.errno_write("sandboxes/withenv/env/K", "W\n") == errno.EACCES
    assert errno_of(os.open, m.path("sandboxes/withenv/env/NEW"),
                    os.O_WRONLY | os.O_CREAT, 0o644) in (errno.EACCES, errno.EPERM)
    assert m.qd.view() == before
    assert m.read("sandboxes/withenv/env/K") == "V\n"


def test_label_value_is_one_line(errs):
    m = errs
    fails_with(m, errno.EINVAL,
               lambda: m.errno_write("sandboxes/busy/labels/multi", "one\ntwo\n", create=True),
               obj_error="sandboxes/busy/error")
    assert "multi" not in m.listdir("sandboxes/busy/labels")
    fails_with(m, errno.EINVAL,
               lambda: m.errno_write("sandboxes/busy/labels/code-toolbox-language", "a\nb\n"),
               obj_error="sandboxes/busy/error")
    assert m.read("sandboxes/busy/labels/code-toolbox-language") == "python\n"


# fs-layout.md "General rules": what cannot be made or removed
EPERM_CASES = [
    ("rename sandbox", lambda p: os.rename(p("sandboxes/busy"), p("sandboxes/moved"))),
    ("rename label", lambda p: os.rename(p("sandboxes/busy/labels/code-toolbox-language"),
                                         p("sandboxes/busy/labels/moved"))),
    ("rename volume", lambda p: os.rename(p("volumes/inuse"), p("volumes/moved"))),
    ("rename node", lambda p: os.rename(p("sandboxes/busy/state"), p("sandboxes/busy/st"))),
    ("symlink", lambda p: os.symlink("busy", p("sandboxes/alias"))),
    ("link", lambda p: os.link(p("sandboxes/busy/state"), p("sandboxes/busy/labels/st"))),
    ("mknod", lambda p: os.mknod(p("sandboxes/busy/labels/fifo"), 0o644 | 0o010000)),
    ("mkdir at root", lambda p: os.mkdir(p("newdir"))),
    ("mkdir in a sandbox", lambda p: os.mkdir(p("sandboxes/busy/newdir"))),
    ("mkdir in labels", lambda p: os.mkdir(p("sandboxes/busy/labels/newdir"))),
    ("mkdir in a volume", lambda p: os.mkdir(p("volumes/inuse/newdir"))),
    ("new file at root", lambda p: os.close(os.open(p("newfile"), os.O_WRONLY | os.O_CREAT))),
    ("new file in a sandbox",
     lambda p: os.close(os.open(p("sandboxes/busy/newfile"), os.O_WRONLY | os.O_CREAT))),
    ("new file in sandboxes",
     lambda p: os.close(os.open(p("sandboxes/newfile"), os.O_WRONLY | os.O_CREAT))),
    ("unlink state", lambda p: os.unlink(p("sandboxes/busy/state"))),
    ("unlink status", lambda p: os.unlink(p("status"))),
    ("unlink id symlink", None),
    ("rmdir labels", lambda p: os.rmdir(p("sandboxes/busy/labels"))),
    ("rmdir env", lambda p: os.rmdir(p("sandboxes/busy/env"))),
    ("rmdir ports", lambda p: os.rmdir(p("sandboxes/busy/ports"))),
    ("rmdir sandboxes", lambda p: os.rmdir(p("sandboxes"))),
    ("rmdir snapshots", lambda p: os.rmdir(p("snapshots"))),
    ("chmod", lambda p: os.chmod(p("sandboxes/busy/state"), 0o600)),
    ("chmod dir", lambda p: os.chmod(p("sandboxes/busy"), 0o700)),
    ("chown", lambda p: os.chown(p("sandboxes/busy/state"), 65534, 65534)),
]


# fs-layout.md: a failed mkdir, rmdir, unlink or create leaves its reason in
# the root error node and the log; chmod, chown, rename, link... only the errno
REPORTED = ("mkdir", "new file", "unlink", "rmdir")


@pytest.mark.parametrize("what,action", EPERM_CASES, ids=[c[0] for c in EPERM_CASES])
def test_eperm(errs, what, action):
    m = errs
    sid = m.qd.get("sandbox", "busy")["id"]
    if action is None:  # the id symlink is no label
        def action(p):
            os.unlink(p(f"sandboxes/{sid}"))
    if what.startswith(REPORTED):
        fails_with(m, errno.EPERM, lambda: errno_of(action, lambda rel: m.path(rel)))
    else:
        before = m.qd.view()
        got = errno_of(action, lambda rel: m.path(rel))
        assert got == errno.EPERM, f"{what}: expected EPERM, got {name_of(got)}"
        assert m.qd.view() == before
    assert m.read("sandboxes/busy/state") == "started\n"


def test_rmdir_of_id_symlink(errs):
    m = errs
    sid = m.qd.get("sandbox", "busy")["id"]
    before = m.qd.view()
    assert errno_of(os.rmdir, m.path("sandboxes", sid)) == errno.ENOTDIR
    assert m.qd.view() == before


def test_touch_changes_nothing(errs):
    m = errs
    before = m.qd.view()
    st = m.stat("sandboxes/busy/state")
    r = m.sh("touch sandboxes/busy/state status sandboxes/busy && touch -d 2001-01-01 control")
    assert r.stderr == ""
    assert m.qd.view() == before
    assert m.read("sandboxes/busy/state") == "started\n"
    assert m.stat("sandboxes/busy/state").st_mode == st.st_mode


def test_rename_of_sandbox(errs):
    m = errs
    before = m.qd.view()
    assert errno_of(os.rename, m.path("sandboxes", "busy"), m.path("sandboxes", "moved")) \
        == errno.EPERM
    assert m.qd.view() == before


@pytest.mark.parametrize("node,value", [("autostop", "soon"), ("autostop", "-5"),
                                        ("autostop", "1.5"), ("autoarchive", "x"),
                                        ("autodelete", "-2"), ("autodelete", "never")])
def test_bad_interval(errs, node, value):
    m = errs
    was = m.read("sandboxes/busy", node)
    fails_with(m, errno.EINVAL, lambda: m.errno_write(f"sandboxes/busy/{node}", value + "\n"),
               obj_error="sandboxes/busy/error")
    assert m.read("sandboxes/busy", node) == was


@pytest.mark.parametrize("tokens", ["bogus=1", "autostop=soon", "language=cobol",
                                    "public=maybe", "volume=novolumeformat"])
def test_bad_defaults(errs, tokens):
    m = errs
    was = m.read("defaults")
    fails_with(m, errno.EINVAL, lambda: m.errno_write("defaults", tokens + "\n"))
    assert m.read("defaults") == was


@pytest.mark.parametrize("command,want", [
    ("frobnicate", errno.EINVAL),
    ("create", errno.EINVAL),
    ("create gizmo g1", errno.EINVAL),
    ("create sandbox z1 bogus=1", errno.EINVAL),
    ("create sandbox z1 language=cobol", errno.EINVAL),
    ("create sandbox z1 cpu=lots", errno.EINVAL),
    ("create sandbox z1 snapshot=snapE cpu=2", errno.EINVAL),
    ("create sandbox z1 snapshot=nosuchsnap", errno.ENOENT),
    ("create sandbox z1 volume=nosuchvol:/data", errno.ENOENT),
    ("snapshot nosuchbox snapZ", errno.ENOENT),
    ("snapshot busy snapE", errno.EEXIST),
])
def test_bad_control_commands(errs, command, want):
    m = errs
    fails_with(m, want, lambda: m.errno_write("control", command + "\n"))
    assert "z1" not in m.listdir("sandboxes")


def test_snapshot_node_errors(errs):
    m = errs
    fails_with(m, errno.EINVAL, lambda: m.errno_write("sandboxes/busy/snapshot", "bad name\n"),
               obj_error="sandboxes/busy/error")
    fails_with(m, errno.EEXIST, lambda: m.errno_write("sandboxes/busy/snapshot", "snapE\n"),
               obj_error="sandboxes/busy/error")
    fails_with(m, errno.EBUSY, lambda: m.errno_write("sandboxes/cold/snapshot", "snapCold\n"),
               obj_error="sandboxes/cold/error")
    assert "snapCold" not in m.listdir("snapshots")


def test_volume_not_ready(make_mount):
    m = make_mount(qd_args=["--transition-delay", "4000"])
    status, data = m.qd.request("POST", "/volumes", json={"name": "slowvol"})
    assert status in (200, 201), data
    fails_with(m, errno.EBUSY,
               lambda: m.errno_write("control", "create sandbox z2 volume=slowvol:/v\n"),
               sandboxes_only=True)


# ---- mount-time failures ------------------------------------------------------

@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_key_file_readable_by_others_is_refused(tmp_path, mode):
    qd = Backend(tmp_path / "qd")
    qd.start()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    key = tmp_path / "key"
    key.write_text(qd.token + "\n")
    os.chmod(key, mode)
    env = clean_env()
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    try:
        before = qd.view()
        r = run([quaverfs_bin(), "-f", "-o", f"api_url={qd.url}", "-o", f"key_file={key}",
                 str(mnt)], env=env, timeout=10)
        assert r.returncode == 1, r
        assert mountinfo_entry(mnt) is None
        out = r.stdout + r.stderr
        assert str(key) in out, f"no message naming the key file: {r!r}"
        assert qd.token not in out
        assert qd.view() == before
    finally:
        if mountinfo_entry(mnt) is not None:
            run(["fusermount3", "-uz", str(mnt)], timeout=10)
        problems = qd.finish()
    assert not problems, problems


def test_unreachable_api_url(make_mount):
    port = free_port()
    m = make_mount(api_url=f"http://127.0.0.1:{port}/api", key="k" * 40)
    t0 = time.monotonic()
    st = m.status()
    assert time.monotonic() - t0 < 2.0
    assert st["reachable"] == "no"
    assert st["backend"] == f"http://127.0.0.1:{port}/api"

    mark = m.log_mark()
    r = m.sh("ls sandboxes", check=False, timeout=20)
    assert r.returncode != 0 and "Input/output error" in r.stderr, r
    assert r.elapsed < 2.0, r
    root = m.read("error")
    assert ": " in root, root
    msg = root.rstrip("\n").split(": ", 1)[1].strip()
    assert msg and msg in m.log_since(mark), (root, m.log_since(mark))
    m.expect_fs_log(re.escape(msg))

    t0 = time.monotonic()
    assert errno_of(os.mkdir, m.path("sandboxes", "x"), timeout=20) == errno.EIO
    assert time.monotonic() - t0 < 2.0
    assert m.qd.view()["sandboxes"] == {}
    # the whole log: the key never, and every warning carries the reason
    m.expect_fs_log(rf"127\.0\.0\.1:{port}|refused|connect")
    assert "k" * 40 not in m.log_text()


def test_second_mount_of_same_mountpoint_is_refused(mount):
    m = mount
    env = clean_env()
    env["DAYTONA_API_KEY"] = m.qd.token
    env["XDG_DATA_HOME"] = str(m.base / "xdg")
    try:
        r = run([quaverfs_bin(), "-f", "-o", f"api_url={m.qd.url}", str(m.mnt)], env=env,
                timeout=10)
    finally:
        with open("/proc/self/mountinfo") as f:
            stacked = sum(1 for line in f if line.split()[4] == str(m.mnt))
        for _ in range(stacked - 1):  # take a stacked mount off before failing
            run(["fusermount3", "-uz", str(m.mnt)], timeout=10)
    assert r.returncode != 0, r
    assert (r.stdout + r.stderr).strip(), "refused without a message"
    assert stacked == 1
    assert m.sh("ls sandboxes").returncode == 0


def test_refused_credentials_stop_the_mount(tmp_path):
    qd = Backend(tmp_path / "qd")
    qd.start()
    qd.expect_log(r"401|[Uu]nauthori")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = clean_env()
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    env["DAYTONA_API_KEY"] = "0" * 64
    try:
        r = run([quaverfs_bin(), "-f", "-o", f"api_url={qd.url}", str(mnt)], env=env,
                timeout=15)
        assert r.returncode == 1, r
        assert mountinfo_entry(mnt) is None
        assert (r.stdout + r.stderr).strip(), "no reason given"
        assert "0" * 64 not in r.stdout + r.stderr
    finally:
        if mountinfo_entry(mnt) is not None:
            run(["fusermount3", "-uz", str(mnt)], timeout=10)
        problems = qd.finish()
    assert not problems, problems


def test_url_that_is_not_the_api_stops_the_mount(tmp_path):
    qd = Backend(tmp_path / "qd")
    qd.start()
    qd.expect_log(r"404|[Nn]ot [Ff]ound")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = clean_env()
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    env["DAYTONA_API_KEY"] = qd.token
    try:
        r = run([quaverfs_bin(), "-f", "-o", f"api_url=http://127.0.0.1:{qd.port}/nothere",
                 str(mnt)], env=env, timeout=15)
        assert r.returncode == 1, r
        assert mountinfo_entry(mnt) is None
        assert (r.stdout + r.stderr).strip(), "no reason given"
    finally:
        if mountinfo_entry(mnt) is not None:
            run(["fusermount3", "-uz", str(mnt)], timeout=10)
        problems = qd.finish()
    assert not problems, problems
