"""files/ knows a sandbox is started (and where its toolbox is) from its
record, which it reuses for a few seconds (src/fs/files.c, toolbox_known): a
sandbox stopped by another client meanwhile is still seen at the next call,
from the toolbox's refusal (fs-layout.md, "A sandbox that is not started")."""

import errno
import os
import time

import pytest

from fsmount import *  # noqa: F401,F403


@pytest.mark.parametrize("autostart", [False, True], ids=["plain", "autostart"])
def test_a_sandbox_stopped_elsewhere_is_seen_at_once(make_mount, autostart):
    m = make_mount(fs_options=["autostart"] if autostart else [])
    if not autostart:
        m.expect_fs_log(r"sandbox el is stopped")
    m.sh("mkdir sandboxes/el && echo hi > sandboxes/el/files/tmp/f.txt")
    assert m.read("sandboxes/el/files/tmp/f.txt") == "hi\n"  # the record is fresh now
    dfd = os.open(m.path("sandboxes/el/files/tmp"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        m.qd.ok("POST", "/sandbox/el/stop")
        m.qd.wait_state("sandbox", "el", "stopped")
        time.sleep(1.1)  # the listing is stale, the record not yet
        if autostart:
            assert call(os.listdir, dfd) == ["f.txt"]
            assert m.qd.get("sandbox", "el")["state"] == "started"
        else:
            assert errno_of(os.listdir, dfd) == errno.EHOSTDOWN
            assert "is stopped" in m.read("sandboxes/el/error")
    finally:
        os.close(dfd)
