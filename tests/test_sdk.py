"""The official Daytona SDK (@daytonaio/sdk from npm, tests/sdk/) against a
real quaverd (issue 6).

tests/sdk/suite.js is given nothing but DAYTONA_API_URL and DAYTONA_API_KEY
(the state dir's url and token) and prints one line per SDK call it checks:
"ok <call>" or "FAIL <call>: <the SDK's error>". Each test here runs some of
its groups, prints the calls exercised and fails on any FAIL line; together
they run every group suite.js has (test_every_group_is_run checks).

The SDK is installed by `npm ci` from tests/sdk/package-lock.json when
tests/sdk/node_modules is missing or holds another SDK version (tools/install-deps installs node and npm).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

SDK_DIR = Path(__file__).resolve().parent / "sdk"
SUITE = SDK_DIR / "suite.js"

NODE_TIMEOUT = 90
# A script's own work takes a few seconds; one that lingers after its last
# call (the SDK's background connection) is a failure.
EXIT_WITHIN = 25
# From the summary line (the script's last statement) to node's exit: the
# SDK closes its socket.io connection and nothing else keeps node alive.
EXIT_AFTER_LAST_CALL = 2.0
INSTALL_TIMEOUT = 300

# SDK methods the suite's scripts called (name -> times) and the groups run,
# over this module's tests: test_acceptance_calls checks them.
CALLED = {}
GROUPS_RUN = set()

# Issue 6's acceptance list, as the SDK methods that carry it.
ACCEPTANCE_CALLS = [
    "Daytona.create", "Daytona.get", "Daytona.list", "Daytona.delete",
    "Process.codeRun", "Process.executeCommand",
    "Process.createSession", "Process.executeSessionCommand", "Process.getSessionCommand",
    "Process.getSessionCommandLogs", "Process.deleteSession",
    "FileSystem.uploadFile", "FileSystem.downloadFile", "FileSystem.listFiles",
    "FileSystem.createFolder", "FileSystem.moveFiles", "FileSystem.deleteFile",
    "FileSystem.getFileDetails", "FileSystem.setFilePermissions", "FileSystem.findFiles",
    "FileSystem.searchFiles", "FileSystem.replaceInFiles",
    "Process.createPty", "PtyHandle.sendInput", "PtyHandle.resize", "PtyHandle.wait",
    "PtyHandle.kill",
    "Sandbox.stop", "Sandbox.start", "Sandbox.archive", "Sandbox.recover", "Sandbox.delete",
    "VolumeService.get", "Sandbox.createSnapshot", "SnapshotService.list",
    "SnapshotService.get", "SnapshotService.delete",
    "Sandbox.setLabels", "Sandbox.setAutostopInterval", "Sandbox.getPreviewLink",
]

# quaverd's archive and restore last this long, so a start with a short
# timeout can be seen to time out (suite.js errors group).
TRANSITION_DELAY_MS = "800"


def _installed_matches_lock():
    """node_modules holds the SDK version package-lock.json names."""
    try:
        lock = json.loads((SDK_DIR / "package-lock.json").read_text())
        installed = json.loads((SDK_DIR / "node_modules" / "@daytonaio" / "sdk" /
                                "package.json").read_text())
    except (OSError, ValueError):
        return False
    wanted = lock.get("packages", {}).get("node_modules/@daytonaio/sdk", {}).get("version")
    return wanted is not None and installed.get("version") == wanted


def _ensure_sdk_installed():
    if _installed_matches_lock():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm not found: run tools/install-deps", pytrace=False)
    proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=SDK_DIR,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=INSTALL_TIMEOUT)
    if proc.returncode != 0:
        pytest.fail(f"npm ci in {SDK_DIR} failed ({proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}", pytrace=False)


def run_suite(q, *groups, run="t"):
    """Runs suite.js GROUPS against @q; returns (exit code, ok calls, FAIL
    lines, all output lines)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found: run tools/install-deps", pytrace=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAYTONA_")}
    env["DAYTONA_API_URL"] = (q.state_dir / "url").read_text().strip()
    env["DAYTONA_API_KEY"] = (q.state_dir / "token").read_text().strip()
    env["SDK_SUITE_RUN"] = run
    # No DAYTONA_USE_DEPRECATED_POLLING: the SDK keeps its socket.io
    # connection to quaverd (daytona-api.md section 9.3) and waits on its
    # events; without quaverd's keep-alive and close handling a script would
    # only exit after minutes of reconnecting, which the time limit catches.
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as err, \
            subprocess.Popen([node, str(SUITE), *groups], cwd=SDK_DIR, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                             text=True) as proc:
        lines, summary_at = [], None
        timer = threading.Timer(NODE_TIMEOUT, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith("sdk: "):
                    summary_at = time.monotonic()
            code = proc.wait()
        finally:
            timer.cancel()
        exited_at = time.monotonic()
        err.seek(0)
        stderr = err.read()
    oks = [line[3:] for line in lines if line.startswith("ok ")]
    fails = [line for line in lines if line.startswith("FAIL ")]
    for line in lines:
        if line.startswith("called "):
            name, times = line[len("called "):].rsplit(" ", 1)
            CALLED[name] = CALLED.get(name, 0) + int(times)
            GROUPS_RUN.update(groups)
    if stderr.strip():
        fails.append("stderr: " + stderr.strip()[-2000:])
    if exited_at - started > EXIT_WITHIN:
        fails.append(f"FAIL node exits promptly: the script took {exited_at - started:.1f} s "
                     f"(limit {EXIT_WITHIN} s)")
    if summary_at is not None and exited_at - summary_at > EXIT_AFTER_LAST_CALL:
        fails.append(f"FAIL node exits promptly: it lingered {exited_at - summary_at:.1f} s "
                     f"after its last call (limit {EXIT_AFTER_LAST_CALL} s)")
    return code, oks, fails, lines


def report(config, title, oks, fails, lines=()):
    """The acceptance asks that the output lists every SDK call exercised:
    written to the terminal even when pytest captures output (-q, passing).
    The checks (ok/FAIL), then the SDK methods the group called, how often."""
    out = [f"SDK calls exercised ({title}):"]
    out += [f"  ok   {c}" for c in oks]
    out += [f"  {f}" for f in fails]
    called = [line[len("called "):] for line in lines if line.startswith("called ")]
    if called:
        out.append("  methods called: " + ", ".join(
            f"{c.rsplit(' ', 1)[0]} x{c.rsplit(' ', 1)[1]}" for c in called))
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if terminal is None or capture is None:
        print("\n".join(out), file=sys.stderr)
        return
    with capture.global_and_fixture_disabled():
        terminal.write_line("")
        for line in out:
            terminal.write_line(line)


def assert_suite(config, q, *groups):
    code, oks, fails, lines = run_suite(q, *groups)
    report(config, " ".join(groups), oks, fails, lines)
    assert not fails, "SDK calls failed:\n" + "\n".join(fails)
    assert code == 0, "suite.js exited %d:\n%s" % (code, "\n".join(lines[-20:]))
    assert lines and lines[-1] == f"sdk: {len(oks)} ok, 0 FAIL", lines[-1:]
    return oks


@pytest.fixture(scope="module")
def sdk_quaverd(make_module_quaverd, pytestconfig):
    """A quaverd holding a sandbox the SDK made whose files vanished while
    quaverd was down: it comes back in error, recoverable (doc/quaverd.md
    "Crash recovery"), for Sandbox.recover."""
    _ensure_sdk_installed()
    q = make_module_quaverd("--transition-delay", TRANSITION_DELAY_MS, name="sdk")
    code, oks, fails, lines = run_suite(q, "prepare")
    report(pytestconfig, "prepare", oks, fails, lines)
    assert code == 0 and not fails, "\n".join(lines)
    broken = [line.split()[1] for line in lines if line.startswith("broken-id ")]
    assert len(broken) == 1, lines
    q.stop()
    shutil.rmtree(q.state_dir / "sandboxes" / broken[0] / "root")
    q.start()
    return q


def test_sdk_control_plane(sdk_quaverd, pytestconfig):
    """create per language, get, list by labels, labels, auto-stop, preview
    link, stop/start/archive/start, recover, delete."""
    oks = assert_suite(pytestconfig, sdk_quaverd, "control")
    assert "Sandbox.recover" in oks


def test_sdk_error_paths(sdk_quaverd, pytestconfig):
    """DaytonaNotFoundError, quaverd's messages in the SDK's errors, a timeout."""
    assert_suite(pytestconfig, sdk_quaverd, "errors")


def test_sdk_volumes(sdk_quaverd, pytestconfig):
    """volume.get(name, true) until ready, a sandbox mounting it with a subpath."""
    assert_suite(pytestconfig, sdk_quaverd, "volumes")


def test_sdk_snapshots(sdk_quaverd, pytestconfig):
    """createSnapshot, snapshot.get/list/delete, a sandbox from the snapshot."""
    assert_suite(pytestconfig, sdk_quaverd, "snapshots")


def test_sdk_files(sdk_quaverd, pytestconfig):
    """fs.createFolder/uploadFile/downloadFile/listFiles/getFileDetails/
    setFilePermissions/findFiles/searchFiles/replaceInFiles/moveFiles/
    deleteFile, each checked by reading back what it did."""
    assert_suite(pytestconfig, sdk_quaverd, "files")


def test_sdk_volume_files(sdk_quaverd, pytestconfig):
    """A file uploaded into a sandbox's subpath mount is read back by a sandbox
    that mounts the whole volume."""
    assert_suite(pytestconfig, sdk_quaverd, "volumefiles")


def test_sdk_process(sdk_quaverd, pytestconfig):
    """process.executeCommand (output, exit code, cwd, env, timeout) and
    codeRun in each language."""
    assert_suite(pytestconfig, sdk_quaverd, "process")


def test_sdk_sessions(sdk_quaverd, pytestconfig):
    """Sessions: state kept between commands, an async command's exit code and
    logs, delete."""
    assert_suite(pytestconfig, sdk_quaverd, "sessions")


def test_sdk_keepalive(sdk_quaverd, pytestconfig):
    """Calls back to back on the SDK's keep-alive connections: downloads of a
    few KB (more than lws sends in one write), then a POST with a body."""
    assert_suite(pytestconfig, sdk_quaverd, "keepalive")


def test_sdk_session_logs(sdk_quaverd, pytestconfig):
    """getSessionCommandLogs with callbacks: the logs followed over a websocket,
    stdout and stderr apart, ending when the command does."""
    assert_suite(pytestconfig, sdk_quaverd, "sessionlogs")


def test_sdk_pty(sdk_quaverd, pytestconfig):
    """createPty (envs, cwd, a subprotocol list over libwebsockets' limits),
    input and output, resize, listPtySessions, wait for the exit code, kill."""
    oks = assert_suite(pytestconfig, sdk_quaverd, "pty")
    assert "PtyHandle.kill" in oks


def test_every_group_is_run():
    """Every group suite.js defines is run by a test of this file."""
    defined = set(re.findall(r"^groups\.(\w+) = async", SUITE.read_text(), re.M))
    here = Path(__file__).read_text()
    run = set(re.findall(r'assert_suite\(pytestconfig, sdk_quaverd, "(\w+)"\)', here))
    run |= set(re.findall(r'run_suite\(q, "(\w+)"\)', here))
    assert defined and defined == run, (sorted(defined - run), sorted(run - defined))


def test_acceptance_calls(sdk_quaverd, pytestconfig):
    """Every SDK method issue 6's acceptance names was called by the suite (and
    its checks passed: the tests above fail otherwise). Groups not run in
    this session (pytest -k) are run here."""
    defined = re.findall(r"^groups\.(\w+) = async", SUITE.read_text(), re.M)
    for group in defined:
        if group != "prepare" and group not in GROUPS_RUN:
            assert_suite(pytestconfig, sdk_quaverd, group)
    missing = [c for c in ACCEPTANCE_CALLS if not CALLED.get(c)]
    assert not missing, f"SDK methods never called: {missing}"
