"""quaverd's command line and state dir contract (doc/quaverd.md "Command
line" and "The state directory"): exit statuses, defaults, files it keeps."""

import os
import re
import signal
import stat
import subprocess

import pytest

from helpers.daytona import create_sandbox
from helpers.quaverd import quaverd_bin


def run_quaverd(*args, env=None, timeout=10):
    return subprocess.run([quaverd_bin(), *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)


def test_help_exits_zero_with_usage():
    proc = run_quaverd("--help")
    assert proc.returncode == 0
    out = proc.stdout.decode()
    for option in ("--state-dir", "--port", "--log-level", "--log-file", "--clock-scale",
                   "--transition-delay", "--max-body", "--workers"):
        assert option in out, option


def test_version_exits_zero():
    proc = run_quaverd("--version")
    assert proc.returncode == 0
    assert re.search(rb"\d+\.\d+\.\d+", proc.stdout), proc.stdout


@pytest.mark.parametrize("args", [
    ("--port", "70000"),
    ("--port", "-1"),
    ("--port", "http"),
    ("--log-level", "verbose"),
    ("--clock-scale", "0"),
    ("--clock-scale", "fast"),
    ("--transition-delay", "-5"),
    ("--max-body", "0"),
    ("--workers", "0"),
    ("--no-such-option",),
    ("--port",),
    ("unexpected-argument",),
], ids=lambda a: " ".join(a))
def test_bad_command_line_exits_2_with_a_message(tmp_path, args):
    state = tmp_path / "state"
    proc = run_quaverd("--state-dir", str(state), *args)
    assert proc.returncode == 2, proc
    assert proc.stderr.strip(), "no message on stderr"
    assert not (state / "token").exists()


def test_first_start_makes_the_state_dir_files(quaverd):
    sd = quaverd.state_dir
    for name in ("token", "port", "url", "lock", "organization"):
        assert (sd / name).is_file(), name
    org = (sd / "organization").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", org)
    assert stat.S_IMODE(os.stat(sd / "organization").st_mode) == 0o600


def test_organization_is_kept_across_restarts(quaverd):
    org = (quaverd.state_dir / "organization").read_text()
    dto = create_sandbox(quaverd)
    quaverd.restart()
    assert (quaverd.state_dir / "organization").read_text() == org
    assert quaverd.ok("GET", f"/sandbox/{dto['id']}")["organizationId"] == org.strip()


def test_missing_parents_of_the_state_dir_are_created(make_quaverd, tmp_path):
    deep = tmp_path / "a" / "b" / "c" / "state"
    q = make_quaverd(state_dir=deep)
    assert stat.S_IMODE(os.stat(deep).st_mode) == 0o700
    assert q.request("GET", "/sandbox").status == 200


def test_default_state_dir_is_under_xdg_data_home(tmp_path):
    """Started without --state-dir, quaverd lives in $XDG_DATA_HOME/quaverd."""
    xdg = tmp_path / "xdg"
    env = dict(os.environ, XDG_DATA_HOME=str(xdg), HOME=str(tmp_path / "home"))
    log = tmp_path / "q.log"
    proc = subprocess.Popen([quaverd_bin(), "--port", "0", "--log-file", str(log)],
                            env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if (xdg / "quaverd" / "url").exists() or proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"])
        assert (xdg / "quaverd" / "url").exists(), proc.poll()
        assert not (tmp_path / "home").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        proc.stderr.close()


def test_default_state_dir_falls_back_to_home(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "XDG_DATA_HOME"}
    env["HOME"] = str(home)
    log = tmp_path / "q.log"
    proc = subprocess.Popen([quaverd_bin(), "--port", "0", "--log-file", str(log)],
                            env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = home / ".local" / "share" / "quaverd"
    try:
        for _ in range(200):
            if (target / "url").exists() or proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"])
        assert (target / "url").exists(), proc.poll()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        proc.stderr.close()


def test_first_log_line_says_where_it_listens(quaverd):
    lines = [ln for ln in quaverd.log_text().splitlines() if " info: " in ln]
    assert any(f"listening on {quaverd.url}" in ln and str(quaverd.state_dir) in ln
               for ln in lines), lines[:5]


def test_fixed_port(make_quaverd, tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The later --port wins over the harness's "--port 0".
    q = make_quaverd("--port", str(port))
    assert q.port == port
    assert (q.state_dir / "port").read_text() == f"{port}\n"


def test_port_in_use_refuses_to_start(quaverd, tmp_path):
    state = tmp_path / "other"
    proc = run_quaverd("--state-dir", str(state), "--port", str(quaverd.port))
    assert proc.returncode == 1, proc
    assert proc.stderr.strip()


def test_sigint_exits_zero(quaverd):
    assert quaverd.kill(signal.SIGINT) == 0


@pytest.mark.parametrize("damage", ["mode", "content", "short"])
def test_damaged_token_file_refuses_to_start(quaverd, damage):
    q = quaverd
    q.stop()
    token = q.state_dir / "token"
    if damage == "mode":
        os.chmod(token, 0o644)
    elif damage == "content":
        token.write_text("z" * 64)
    else:
        token.write_text("abc123")
    proc = subprocess.run(q.command(), capture_output=True, timeout=10)
    assert proc.returncode == 1, proc
    assert proc.stderr.strip()
    q.expect_log(r"token")


def test_state_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    proc = run_quaverd("--state-dir", str(path), "--port", "0")
    assert proc.returncode == 1, proc
    assert proc.stderr.strip()
