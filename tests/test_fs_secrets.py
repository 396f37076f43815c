"""The key (quaverd's token) appears nowhere a user or another process can
see it: ps -ef, /proc/self/mountinfo, quaverfs's log, any file of the mount
(fs-layout.md, "Mounting")."""

import os

import pytest

from fsmount import *  # noqa: F401,F403


def exercise(m):
    """Enough traffic that every kind of request reaches the log."""
    m.sh("mkdir sandboxes/sec && echo 'create volume secvol' > control && "
         "echo 'create sandbox sec2 env=PASSWORD=hunter2 label=a=b volume=secvol:/v' > control "
         "&& echo stop > sandboxes/sec/state && echo start > sandboxes/sec/state && "
         "echo v > sandboxes/sec/labels/k && rm sandboxes/sec/labels/k && "
         "echo 20 > sandboxes/sec/autostop && echo secsnap > sandboxes/sec/snapshot && "
         "cat sandboxes/sec/ports/8080 status && ls -lR --ignore=files . > /dev/null")
    m.errno_write("sandboxes/sec/state", "sideways\n")  # a failure: its message is logged
    m.expect_fs_log(r"sideways|sec/state")


def every_file(m):
    """{relative path: content} of every file of the mount, ports included."""
    def walk():
        out = {}
        for dirpath, dirnames, filenames in os.walk(m.mnt):
            # A sandbox's files/ is its own filesystem (the whole of /usr
            # among it); that nothing from outside reaches it is
            # test_files_escape's and test_toolbox_escape's to show.
            if os.path.basename(os.path.dirname(dirpath)) == "sandboxes":
                dirnames[:] = [d for d in dirnames if d != "files"]
            names = list(filenames)
            if os.path.basename(dirpath) == "ports":
                names += ["1", "3000", "8080", "65535"]  # not listed, but readable
            for n in names:
                p = os.path.join(dirpath, n)
                with open(p, "rb") as f:
                    out[os.path.relpath(p, m.mnt)] = f.read().decode(errors="replace")
        return out
    return call(walk)


def assert_key_hidden(m, key):
    pieces = [key, key[:16], key[-16:]]

    ps = run(["ps", "-efww"], check=True).stdout
    assert str(m.proc.pid) in ps
    for p in pieces:
        assert p not in ps, "the key is in ps -ef"
    for pid in [m.proc.pid, *m.embedded_pids]:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert key.encode() not in f.read()

    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    assert mount_source(m.mnt) == f"quaverfs#{m.qd.url}", mountinfo_entry(m.mnt)
    r = run(["mount"], check=True)
    assert f"quaverfs#{m.qd.url} on {m.mnt} type fuse" in r.stdout
    for p in pieces:
        assert p not in mountinfo, "the key is in /proc/self/mountinfo"

    files = every_file(m)
    assert len(files) > 30
    leaks = [path for path, text in files.items() if any(p in text for p in pieces)]
    assert not leaks, f"the key is in {leaks}"

    log = m.log_text()
    assert log.strip(), "quaverfs logged nothing"
    for p in pieces:
        assert p not in log, "the key is in quaverfs's log"


def test_key_hidden_with_env_key_and_debug_log(make_mount):
    m = make_mount(debug=True)
    exercise(m)
    assert "GET" in m.log_text() or "sandbox" in m.log_text()  # -d logs requests
    assert_key_hidden(m, m.qd.token)


def test_key_hidden_with_key_file(make_mount):
    m = make_mount(mode="key_file", debug=True)
    exercise(m)
    assert_key_hidden(m, m.qd.token)


def test_key_hidden_with_jwt_and_organization(make_mount):
    m = make_mount(mode="jwt", debug=True)
    exercise(m)
    assert_key_hidden(m, m.qd.token)


def test_key_hidden_in_embedded_mode(make_mount):
    m = make_mount(mode="embedded", debug=True)
    exercise(m)
    assert_key_hidden(m, m.qd.token)


@pytest.mark.parametrize("opt", ["api_key", "key", "token", "jwt"])
def test_key_as_mount_option_is_refused_without_echo(tmp_path, opt):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    secret = "s3cr3t" + "9f" * 20
    env = clean_env()
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    r = run([quaverfs_bin(), "-f", "-o", "api_url=http://127.0.0.1:9/api", "-o",
             f"{opt}={secret}", str(mnt)], env=env, timeout=10)
    try:
        assert r.returncode != 0, r
        assert (r.stdout + r.stderr).strip(), "refused without a message"
        assert secret not in r.stdout + r.stderr
        assert secret[:16] not in r.stdout + r.stderr
    finally:
        if mountinfo_entry(mnt) is not None:
            run(["fusermount3", "-uz", str(mnt)], timeout=10)
    assert mountinfo_entry(mnt) is None
