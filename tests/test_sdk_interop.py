"""The official Daytona SDK and a quaverfs mount on the same quaverd (issue 6,
"Interoperation with the mount"): what one makes, the other sees.

The SDK side is tests/sdk/interop.js, one small node script per step, given
only DAYTONA_API_URL and DAYTONA_API_KEY (as tests/test_sdk.py does); the
mount side is a real quaverfs (tests/fsmount.py), used as a shell user would.
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fsmount import call, mount_session
from test_sdk import SDK_DIR, _ensure_sdk_installed

INTEROP = SDK_DIR / "interop.js"
NODE_TIMEOUT = 60
HOME = "/home/daytona"


@pytest.fixture(scope="module")
def env(tmp_path_factory, request):
    _ensure_sdk_installed()
    yield from mount_session(tmp_path_factory.mktemp("sdk-interop"), request)


def sdk(m, *args):
    """Runs one interop.js step against @m's quaverd; returns its JSON."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found: run tools/install-deps", pytrace=False)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DAYTONA_")}
    environ["DAYTONA_API_URL"] = (m.qd.state_dir / "url").read_text().strip()
    environ["DAYTONA_API_KEY"] = (m.qd.state_dir / "token").read_text().strip()
    proc = subprocess.run([node, str(INTEROP), *map(str, args)], cwd=SDK_DIR, env=environ,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=NODE_TIMEOUT)
    assert proc.returncode == 0, f"interop.js {args}: {proc.stderr.strip()[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wait_for(what, fn, timeout):
    """Polls @fn (through the mount, each call with a deadline) until it is
    true; returns the seconds it took."""
    start = time.monotonic()
    while True:
        if call(fn, timeout=30):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def made(env):
    """A sandbox the SDK made while the mount was looking at sandboxes/."""
    m = env
    name = "sdk-made"
    sandboxes = m.mnt / "sandboxes"
    assert name not in call(os.listdir, sandboxes)  # the mount's listing is cached now
    assert call(os.path.exists, sandboxes / name) is False  # and so is the absent name
    sb = sdk(m, "create", name)
    took = wait_for("the SDK's sandbox under sandboxes/", lambda: name in os.listdir(sandboxes),
                    timeout=5)
    return {"name": name, "id": sb["id"], "dir": sandboxes / name, "took": took, "sdk": sb}


def test_sandbox_created_by_the_sdk_appears_within_2_s(env, made):
    assert made["sdk"]["state"] == "started"
    assert made["took"] <= 2.0, f"it took {made['took']:.2f} s"
    assert call(Path.read_text, made["dir"] / "id") == made["id"] + "\n"
    assert call(Path.read_text, made["dir"] / "state") == "started\n"


ALL_BYTES = bytes(range(256)) * 257 + b"\r\n\0\xff" + "ünïcödé\n".encode()


def test_sdk_upload_reads_back_through_files(env, made, tmp_path):
    m = env
    local = tmp_path / "up.bin"
    local.write_bytes(ALL_BYTES + os.urandom(300_000))
    sdk(m, "upload", made["id"], local, f"{HOME}/sdk-up.bin")
    through = made["dir"] / "files" / HOME.lstrip("/") / "sdk-up.bin"
    wait_for("the uploaded file under files/", lambda: os.path.exists(through), timeout=3)
    assert call(Path.read_bytes, through) == local.read_bytes()
    # replaced by the SDK: the mount reads the new bytes (fs-layout.md, files/
    # "Consistency": a change made in the sandbox shows within about 1 s)
    local.write_bytes(b"second version\n" + ALL_BYTES)
    sdk(m, "upload", made["id"], local, f"{HOME}/sdk-up.bin")
    wait_for("the replaced file through files/",
             lambda: through.read_bytes() == local.read_bytes(), timeout=2.5)


def test_written_through_files_downloads_through_the_sdk(env, made, tmp_path):
    m = env
    data = os.urandom(200_000) + ALL_BYTES
    through = made["dir"] / "files" / HOME.lstrip("/") / "from-mount.bin"
    call(Path.write_bytes, through, data)  # close-to-open: in the sandbox once closed
    out = tmp_path / "down.bin"
    sdk(m, "download", made["id"], f"{HOME}/from-mount.bin", out)
    assert out.read_bytes() == data


def test_command_from_a_run_node_is_seen_by_the_sdk_session_api(env, made):
    """mkdir runs/S is a toolbox session S; a command line written to
    runs/S/command is one of its commands, which the SDK lists with its
    state, exit code and logs (fs-layout.md, runs/)."""
    session = made["dir"] / "runs" / "from-mount"
    call(os.mkdir, session)
    line = 'echo from-run-node; echo to-stderr >&2; read answer; echo "got $answer"; false'
    call(Path.write_text, session / "command", line + "\n")
    # still running (it waits for its stdin): listed, without an exit code
    seen = sdk(env, "session", made["id"], "from-mount")
    assert seen["session"] == "from-mount"
    assert [(c["command"], c["exitCode"]) for c in seen["commands"]] == [(line, None)]
    call(Path.write_text, session / "stdin", "hello\n")
    assert call(Path.read_text, session / "exit") == "1\n"
    seen = sdk(env, "session", made["id"], "from-mount")
    [cmd] = seen["commands"]
    assert (cmd["command"], cmd["exitCode"]) == (line, 1)
    assert cmd["stdout"] == "from-run-node\ngot hello\n"
    assert cmd["stderr"] == "to-stderr\n"
    # the run node shows the same bytes (stdout and stderr written at once
    # come through two pipes: their relative order is not asserted here)
    output = call(Path.read_text, session / "output")
    assert sorted(output.splitlines()) == ["from-run-node", "got hello", "to-stderr"]
