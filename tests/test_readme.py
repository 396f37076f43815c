"""The README's promises, run as a newcomer would: its first command mounts
the local backend and the tour works on it, line by line; the installed
quaverfs mounts through mount(8) and an fstab line (doc/mounting.md)."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def code_blocks(text):
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def section(text, heading):
    m = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, f"README has no '## {heading}' section"
    return m.group(1)


def is_mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


def stop_quaverd(state_dir):
    """quaverd holds its lock file while it runs: stop whoever holds it."""
    lock = Path(state_dir) / "lock"
    if not lock.exists():
        return
    r = subprocess.run(["fuser", str(lock)], capture_output=True, text=True)
    for pid in r.stdout.split():
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not subprocess.run(["fuser", str(lock)], capture_output=True).stdout.strip():
            return
        time.sleep(0.1)
    pytest.fail("quaverd did not exit on SIGTERM")


def unmount(path):
    if is_mounted(path):
        subprocess.run(["fusermount3", "-u", str(path)], check=False)


@pytest.fixture
def newcomer_home():
    home = Path(tempfile.mkdtemp(prefix="quaver-newcomer-"))
    yield home
    unmount(home / "sandboxes")
    stop_quaverd(home / ".local/share/quaverd")
    shutil.rmtree(home, ignore_errors=True)


def test_readme_opens_with_the_two_commands():
    first = code_blocks(README)[0].split("\n")
    commands = [line for line in first if line.strip()]
    assert commands == ["tools/quaverfs-up ~/sandboxes", "tools/test"]
    assert (REPO / ".ci/run").read_text().rstrip().endswith("exec tools/test")


def test_first_command_mounts_and_the_tour_works(newcomer_home):
    env = dict(os.environ, HOME=str(newcomer_home))
    for var in ("DAYTONA_API_KEY", "DAYTONA_JWT_TOKEN", "DAYTONA_API_URL", "XDG_DATA_HOME"):
        env.pop(var, None)
    first_command = code_blocks(README)[0].split("\n")[0]
    r = subprocess.run(["bash", "-c", first_command], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    mnt = newcomer_home / "sandboxes"
    assert is_mounted(mnt)
    assert "reachable yes" in (mnt / "status").read_text()

    tour = code_blocks(section(README, "Tour"))[0]
    lines = [line[2:] for line in tour.split("\n") if line.startswith("$ ")]
    assert len(lines) > 10
    cwd = REPO
    for line in lines:
        if line.startswith("cd "):
            cwd = Path(line[3:].strip().replace("~", str(newcomer_home), 1))
            continue
        r = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=180)
        if "# fails" in line:
            assert r.returncode != 0, f"{line!r} should fail as the README says"
            assert "busy" in r.stderr.lower(), r.stderr
        else:
            assert r.returncode == 0, f"{line!r}: {r.stdout}{r.stderr}"
        if line.startswith("cat sandboxes/demo/error"):
            assert "started" in r.stdout, r.stdout
        if line.startswith("grep -l started"):
            assert "sandboxes/demo/state" in r.stdout.split()
    assert not is_mounted(mnt), "the tour ends with an unmount"


def test_mount_helper_and_fstab(tmp_path):
    """`mount -t fuse.quaverfs` and an fstab line, through fuse3's helper."""
    if os.geteuid() != 0:
        pytest.fail("mount(8) needs root here")
    subprocess.run(["meson", "install", "-C", str(REPO / "build"), "--quiet", "--no-rebuild"],
                   check=True, capture_output=True, timeout=120)
    state = tmp_path / "state"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "fuse.quaverfs", "-o", f"state_dir={state}",
                            "quaverfs", str(mnt)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert is_mounted(mnt)
        assert "kind local" in (mnt / "status").read_text()
        (mnt / "sandboxes" / "viamount").mkdir()
        assert (mnt / "sandboxes" / "viamount" / "state").read_text() == "started\n"
        subprocess.run(["umount", str(mnt)], check=True, timeout=30)
        assert not is_mounted(mnt)

        fstab = tmp_path / "fstab"
        fstab.write_text(f"quaverfs {mnt} fuse.quaverfs defaults,_netdev,state_dir={state} 0 0\n")
        r = subprocess.run(["mount", "-T", str(fstab), str(mnt)], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert "viamount" in os.listdir(mnt / "sandboxes")
        subprocess.run(["umount", str(mnt)], check=True, timeout=30)
    finally:
        unmount(mnt)
        stop_quaverd(state)
