"""A real file manager on the mount (issue 4 acceptance): PCManFM (Debian's
pcmanfm, on GLib/GIO like Thunar and Nautilus) under Xvfb opens the mount
root, a sandbox and its files/, copies files in with its own copy and
paste (driven by xdotool, as a user's keys), stays alive and responsive,
and quaverfs logs no error or warning meanwhile. A screenshot is saved to
$QUAVER_ARTIFACTS (else /tmp/quaver-artifacts), never committed.
"""

import os
import shutil
import signal
import subprocess
import time

import pytest

from files_helpers import (HOME, artifacts_dir, bounded, files_session, pattern_block,
                           run, wait_for)

TOOLS = ("Xvfb", "pcmanfm", "xdotool", "import", "dbus-run-session")
SCREEN = (1600, 900)
ALIVE_FOR = 5.0
# what pcmanfm would print about a failing filesystem
FM_FAILURES = ("Input/output error", "Transport endpoint", "Software caused connection abort",
               "Operation not permitted", "No such device", "timed out")


@pytest.fixture(scope="module")
def fenv(tmp_path_factory, request):
    yield from files_session(tmp_path_factory.mktemp("filemanager"), request)


class Desktop:
    """Xvfb plus one pcmanfm instance (in its own session bus), torn down
    by the ids this fixture started."""

    def __init__(self, base):
        self.base = base
        self.xvfb = None
        self.fm = None
        self.display = None
        home = base / "home"
        runtime = base / "runtime"
        for d in (home, runtime):
            d.mkdir(parents=True)
        runtime.chmod(0o700)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("DAYTONA_", "DBUS_", "XDG_", "WAYLAND"))}
        self.env.update({"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime),
                         "XDG_CONFIG_HOME": str(home / ".config"),
                         "XDG_CACHE_HOME": str(home / ".cache"),
                         "XDG_DATA_HOME": str(home / ".local" / "share"),
                         "NO_AT_BRIDGE": "1", "LC_ALL": "C.UTF-8"})
        self.fm_log = base / "pcmanfm.log"

    def start_x(self):
        r, w = os.pipe()
        self.xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(w), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
             "-nolisten", "tcp"],
            pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.base / "xvfb.log", "wb"), start_new_session=True)
        os.close(w)
        deadline = time.monotonic() + 15
        got = b""
        while not got.endswith(b"\n"):
            assert time.monotonic() < deadline, "Xvfb gave no display number"
            chunk = os.read(r, 16)
            assert chunk, f"Xvfb exited: {(self.base / 'xvfb.log').read_text()}"
            got += chunk
        os.close(r)
        self.display = ":" + got.decode().strip()
        self.env["DISPLAY"] = self.display

    def open(self, path):
        """A new pcmanfm window on @path (the first call starts pcmanfm)."""
        if self.fm is None:
            log = open(self.fm_log, "ab")
            self.fm = subprocess.Popen(["dbus-run-session", "--", "pcmanfm", "--new-win",
                                        str(path)], env=self.env, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=log, start_new_session=True)
            log.close()
        else:
            r = run(["pcmanfm", "--new-win", str(path)], env=self.env, timeout=20)
            assert r.returncode == 0, r

    def xdo(self, *args, timeout=15):
        r = run(["xdotool", *args], env=self.env, timeout=timeout)
        return r

    def window(self, title, timeout=20):
        """The id of the visible window named @title (pcmanfm: the folder's name)."""
        def find():
            r = self.xdo("search", "--onlyvisible", "--name", f"^{title}$")
            ids = r.stdout.split()
            return ids[0] if ids else None
        return wait_for(find, timeout, interval=0.2, what=f"a window named {title!r}")

    def place(self, win, x, y, w, h):
        self.xdo("windowmove", "--sync", win, str(x), str(y), timeout=10)
        self.xdo("windowsize", "--sync", win, str(w), str(h), timeout=10)

    def focus_and_click(self, win):
        self.xdo("windowfocus", "--sync", win)
        time.sleep(0.3)
        # an empty spot of the folder view (right of the icons, below them)
        self.xdo("mousemove", "--window", win, "330", "300", "click", "1")
        time.sleep(0.3)

    def keys(self, *keys):
        for k in keys:
            self.xdo("key", k)
            time.sleep(0.3)

    def screenshot(self, path):
        r = run(["import", "-window", "root", str(path)], env=self.env, timeout=30)
        assert r.returncode == 0 and path.stat().st_size > 0, r

    def fm_alive(self):
        return self.fm is not None and self.fm.poll() is None

    def fm_output(self):
        try:
            return self.fm_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        for proc in (self.fm, self.xvfb):
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def desktop(tmp_path):
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing {missing}: run tools/install-deps", pytrace=False)
    d = Desktop(tmp_path / "desktop")
    try:
        d.start_x()
        yield d
    finally:
        d.stop()


@bounded(150)
def test_pcmanfm_browses_and_copies(fenv, desktop, tmp_path):
    m = fenv.m
    mark = m.log_mark()
    # a local folder to copy from, and the folder on files/ to paste into
    src = tmp_path / "fm-src"
    src.mkdir()
    (src / "copyme.txt").write_bytes(b"copied by the file manager\n")
    (src / "image-like.bin").write_bytes(pattern_block("fm", 0, 2 << 20))
    drop = fenv.home / "fmdrop"
    os.mkdir(drop)
    with open(fenv.home / "already-there.txt", "w") as f:
        f.write("listed\n")

    windows = [("mnt", m.mnt), ("fx", m.path("sandboxes", "fx")), ("files", fenv.files),
               ("daytona", fenv.home), ("fm-src", src), ("fmdrop", drop)]
    ids = {}
    cols, rows = 4, 2
    w, h = SCREEN[0] // cols, SCREEN[1] // rows
    for i, (title, path) in enumerate(windows):
        desktop.open(path)
        ids[title] = desktop.window(title)
        desktop.place(ids[title], (i % cols) * w, (i // cols) * h, w, h)
    assert desktop.fm_alive(), desktop.fm_output()

    # the file manager's own copy: select all in fm-src, copy, paste in fmdrop
    desktop.focus_and_click(ids["fm-src"])
    desktop.keys("ctrl+a", "ctrl+c")
    desktop.focus_and_click(ids["fmdrop"])
    desktop.keys("ctrl+v")
    wait_for(lambda: sorted(os.listdir(drop)) == ["copyme.txt", "image-like.bin"], 30,
             interval=0.2, what="the pasted files in files/home/daytona/fmdrop")
    vp = f"{HOME}/fmdrop"
    wait_for(lambda: fenv.tb.download_status(f"{vp}/image-like.bin") ==
             (200, (src / "image-like.bin").read_bytes()), 20, interval=0.2,
             what="the copy in the sandbox, whole")
    assert fenv.tb.download(f"{vp}/copyme.txt") == b"copied by the file manager\n"

    # still alive and responsive: it opens one more window after a while
    time.sleep(ALIVE_FOR)
    assert desktop.fm_alive(), desktop.fm_output()
    desktop.open(fenv.mount_path("/tmp"))
    desktop.place(desktop.window("tmp"), 3 * w, h, w, h)
    desktop.focus_and_click(ids["fmdrop"])
    desktop.keys("F5")  # reload the pasted-into folder
    time.sleep(1.0)
    assert desktop.fm_alive(), desktop.fm_output()

    shot = artifacts_dir() / "filemanager.png"
    desktop.screenshot(shot)
    print(f"screenshot: {shot}")

    # no errors from quaverfs while a file manager probed everything
    bad = [line for line in m.log_since(mark).splitlines()
           if " error: " in line or " warn: " in line]
    assert bad == [], "quaverfs logged:\n" + "\n".join(bad)
    out = desktop.fm_output()
    # (the session bus it runs under may say it cannot raise its fd limit)
    complaints = [line for line in out.splitlines() if not line.startswith("dbus-daemon[")
                  and (str(m.mnt) in line or any(f in line for f in FM_FAILURES))]
    assert complaints == [], "pcmanfm complained:\n" + "\n".join(complaints)
