"""Secrets (issue 7, "Security"): quaverd's token (the API key of a local
mount) is nowhere a sandbox's processes can look: argv, environment,
mountinfo, files; quaverd and quaverfs are not dumpable (no core file, no
/proc/PID/environ for their own user); every file of quaverd's state dir
that holds or guards a secret is 0600 and the user's.

test_fs_secrets.py has ps, mountinfo, log and nodes of a mount;
test_quaverd_auth.py the token file, the logs and the state dir modes."""

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from fsmount import *  # noqa: F401,F403
from test_runtime_process import new_box

NOBODY = (65534, 65534)


@pytest.fixture(scope="module")
def sq(make_module_quaverd):
    q = make_module_quaverd(name="secrets")
    q.box = new_box(q, env={"USER_VAR": "1"})
    return q


def test_token_is_not_in_any_sandbox_process(sq):
    """Shell commands, session commands and terminals: no token, no
    DAYTONA_* variable, no state dir path in argv or environment."""
    q = sq
    box = q.box
    sid = "sec-sess"
    assert box.call("POST", "process/session", json={"sessionId": sid}).status in (200, 201)
    r = box.call("POST", f"process/session/{sid}/exec", json={
        "command": "env; cat /proc/self/cmdline /proc/1/cmdline 2>/dev/null | tr '\\0' ' '",
        "runAsync": False})
    assert r.status == 200, r
    texts = [str(r.data)]
    texts.append(box.out("env; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null;"
                         " tr '\\0' '\\n' < $p/environ 2>/dev/null; echo; done"))
    code = box.code_run("import os; print(dict(os.environ))")
    texts.append(str(code.data))
    joined = "\n".join(texts)
    assert q.token not in joined
    assert "DAYTONA_API_KEY" not in joined and "DAYTONA_JWT_TOKEN" not in joined
    assert str(q.state_dir) not in joined
    assert "USER_VAR=1" in joined  # the environment asked for is there


def test_token_is_not_in_any_file_of_a_sandbox(sq):
    q = sq
    out = q.box.out(f"grep -rlF {q.token[:32]} / --exclude-dir=proc --exclude-dir=sys "
                    "--exclude-dir=usr --exclude-dir=dev 2>/dev/null; true")
    assert out == "", out


def test_state_dir_secrets_are_private(sq):
    """Every file quaverd keeps at the top of its state dir (token, lock,
    url, port, organization, ...) and the dir itself: the user's, no access
    for group or others."""
    q = sq
    st = os.stat(q.state_dir)
    assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077 == 0
    for entry in os.scandir(q.state_dir):
        s = entry.stat(follow_symlinks=False)
        assert s.st_uid == os.getuid(), entry.path
        assert stat.S_IMODE(s.st_mode) & 0o077 == 0, f"{entry.path} is {oct(s.st_mode)}"
    tok = os.stat(q.state_dir / "token")
    assert stat.S_IMODE(tok.st_mode) == 0o600


def _as_nobody(cmd, cwd, env=None):
    return subprocess.Popen(["setpriv", f"--reuid={NOBODY[0]}", f"--regid={NOBODY[1]}",
                             "--clear-groups", "--", *cmd], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            preexec_fn=lambda: __import__("resource").setrlimit(
                                __import__("resource").RLIMIT_CORE, (-1, -1)))


def _not_dumpable(pid, what):
    """A process of another user that is not dumpable has its /proc files
    owned by root: its own user cannot read its environment or memory."""
    for name in ("environ", "mem"):
        st = os.stat(f"/proc/{pid}/{name}")
        assert st.st_uid == 0, f"{what}: /proc/{pid}/{name} belongs to uid {st.st_uid} " \
                               "(the process is dumpable)"
    r = run(["setpriv", f"--reuid={NOBODY[0]}", f"--regid={NOBODY[1]}", "--clear-groups", "--",
             "cat", f"/proc/{pid}/environ"], timeout=10)
    assert r.returncode != 0, f"{what}: its own user read its environment"


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the daemon as another user")
def test_quaverd_is_not_dumpable_and_leaves_no_core():
    """quaverd holds the token: PR_SET_DUMPABLE 0, so a crash leaves no core
    file (with core_pattern "core" and RLIMIT_CORE unlimited)."""
    base = Path(tempfile.mkdtemp(prefix="quaverd-dump-"))
    try:
        os.chmod(base, 0o755)
        state = base / "state"
        os.chown(base, *NOBODY)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(base)}
        p = _as_nobody([quaverd_bin(), "--state-dir", str(state), "--port", "0",
                        "--log-file", str(base / "log")], cwd=base, env=env)
        deadline = time.monotonic() + 15
        while not (state / "url").exists():
            assert p.poll() is None, p.stdout.read().decode(errors="replace")
            assert time.monotonic() < deadline, "quaverd did not start"
            time.sleep(0.05)
        _not_dumpable(p.pid, "quaverd")
        os.kill(p.pid, signal.SIGSEGV)
        p.wait(timeout=15)
        cores = [f for f in os.listdir(base) if f.startswith("core")]
        assert not cores, f"quaverd left {cores}"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts as another user")
def test_quaverfs_is_not_dumpable():
    """quaverfs holds the API key: not dumpable either."""
    fuse_mode = os.stat("/dev/fuse").st_mode & 0o777
    if fuse_mode & 0o006 != 0o006:
        os.chmod("/dev/fuse", 0o666)
    base = Path(tempfile.mkdtemp(prefix="quaverfs-dump-"))
    os.chmod(base, 0o755)
    cache = base / "cache"
    cache.mkdir()
    os.chown(cache, *NOBODY)
    m = Mount(base, user=NOBODY, env={"XDG_CACHE_HOME": str(cache), "HOME": str(base)})
    try:
        m.start()
        _not_dumpable(m.proc.pid, "quaverfs")
    finally:
        problems = m.finish()
        shutil.rmtree(base, ignore_errors=True)
        os.chmod("/dev/fuse", fuse_mode)
    assert not problems, problems
