"""Sandboxes are real isolated environments (doc/quaverd.md "Runtime and
processes"): what a process inside sees and cannot reach, that stop kills
everything whatever it forks or however it detaches, what a restart of
quaverd does, files shared with the toolbox's file API, volumes with
subpaths, and the resource limits."""

import glob
import os
import re
import signal
import threading
import time
import uuid

import pytest

from helpers.daytona import create_volume, wait_sandbox
from test_runtime_process import (Box, host_processes_in_namespace,
                                  host_pids_with_arg, new_box, still_alive, wait_until)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sandbox_cgroups(sandbox_id):
    """The cgroup directories of a sandbox, in every hierarchy (quaverd nests them)."""
    found = []
    for top in glob.glob("/sys/fs/cgroup/*/"):
        for dirpath, dirnames, _ in os.walk(top):
            if os.path.basename(dirpath).startswith("quaverd-"):
                found += [os.path.join(dirpath, d) for d in dirnames if d == sandbox_id]
                dirnames[:] = []
    return found


def unique_sleep():
    """A sleep duration nobody else uses, to find the process on the host."""
    return f"{3000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"


@pytest.fixture(scope="module")
def box(shared_quaverd):
    return new_box(shared_quaverd)


# ---- what a process sees ---------------------------------------------------------------


def test_ps_shows_only_the_sandbox(box):
    lines = box.out("ps -eo pid=,comm=").split("\n")
    procs = [line.split(None, 1) for line in lines if line.strip()]
    assert procs[0] == ["1", "quaverd-init"], procs
    assert {comm for _, comm in procs[1:]} <= {"bash", "ps"}, procs
    assert len(procs) <= 4, procs


def test_identity_hostname_and_no_capabilities(box):
    out = box.out("id; hostname; grep -E '^Cap(Eff|Prm)' /proc/self/status; "
                  "cat /proc/self/uid_map")
    assert "uid=1000(daytona) gid=1000(daytona)" in out
    assert box.name + "\n" in out
    assert re.search(r"CapEff:\s+0+\n", out) and re.search(r"CapPrm:\s+0+\n", out), out
    assert re.search(r"^\s*1000\s+\d+\s+1$", out, re.M), out  # only uid 1000 is mapped


def test_host_and_other_sandboxes_are_out_of_reach(shared_quaverd, box):
    q = shared_quaverd
    other = new_box(q)
    marker = "marker-" + uuid.uuid4().hex
    other.out(f"echo secret > /home/daytona/{marker}")
    paths = ["/etc/shadow", str(q.state_dir), str(q.state_dir / "token"), REPO,
             os.path.join(REPO, "src"), str(q.state_dir / "sandboxes" / other.id),
             f"/proc/1/root/home/daytona/{marker}"]
    script = "; ".join(f"if [ -e '{p}' ]; then echo 'present {p}'; fi" for p in paths)
    assert box.out(script) == ""
    # Nothing of the other sandbox anywhere in this one's tree.
    assert box.out(f"find / -xdev -name '{marker}' 2>/dev/null; true") == ""
    # The host's /etc is not the sandbox's: no shadow, no host keys.
    assert box.out("ls /etc | grep -c -E '^(shadow|gshadow|ssh)' || true") == "0\n"
    # The init's descriptors (its lifeline) and environment are not readable.
    code, out = box.run("ls /proc/1/fd; cat /proc/1/environ")
    assert code != 0 and "Permission denied" in out
    # The other sandbox's processes are invisible too.
    tag = unique_sleep()
    other.out(f"setsid sleep {tag} >/dev/null 2>&1 < /dev/null & true")
    wait_until("the other's sleeper", lambda: host_pids_with_arg(tag), timeout=5)
    assert box.out(f"ps -C sleep -o args= | grep -c '{tag}' || true") == "0\n"
    other.stop()


def test_usr_is_read_only_and_tmp_is_private(box, shared_quaverd):
    code, out = box.run("touch /usr/quaverd-test")
    assert code != 0 and "Read-only" in out
    box.out("echo mine > /tmp/private")
    other = new_box(shared_quaverd)
    assert other.out("cat /tmp/private 2>/dev/null || echo none") == "none\n"
    other.stop()


def test_network_block_all(shared_quaverd, box):
    port = shared_quaverd.port
    probe = f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected"
    assert box.out(probe) == "connected\n"  # the host's loopback is shared by default
    blocked = new_box(shared_quaverd, networkBlockAll=True)
    code, out = blocked.run(probe)
    assert code != 0 and "connected" not in out
    ifaces = [line.split(":")[0].strip()
              for line in blocked.out("cat /proc/net/dev").splitlines()[2:]]
    assert ifaces == ["lo"], ifaces
    blocked.stop()


# ---- stop kills everything ---------------------------------------------------------------


def test_stop_kills_every_process_whatever_it_did(shared_quaverd):
    b = new_box(shared_quaverd)
    ns = b.pid_namespace()
    tag = unique_sleep()
    b.out(f"for i in $(seq 200); do sleep {tag} & done; "
          f"setsid nohup sleep {tag} >/dev/null 2>&1 < /dev/null & "
          f"(setsid sh -c 'sleep {tag} & sleep {tag}' >/dev/null 2>&1 < /dev/null &) ; "
          f"nohup sh -c 'trap \"\" TERM HUP INT; sleep {tag}' >/dev/null 2>&1 & true")
    wait_until("the sleepers", lambda: len(host_pids_with_arg(tag)) >= 204, timeout=10)
    before = host_processes_in_namespace(ns)
    assert len(before) >= 205
    b.stop()
    # Gone by the time stop answered.
    assert still_alive(before) == []
    assert host_pids_with_arg(tag) == []
    b.start()
    assert set(b.out("ps -eo comm=").split()) <= {"quaverd-init", "bash", "ps"}


def test_fork_bomb_is_bounded_and_dies_on_stop(shared_quaverd):
    q = shared_quaverd
    b = new_box(q)
    ns = b.pid_namespace()
    line = limits_line(q, b.id)
    enforced = re.search(r"pids cgroup v[12] pids\.max", line) is not None
    if not enforced:
        # Honest when it cannot: the log says so, and stop still kills the bomb.
        assert "pids not enforced" in line, line
    peak = [0]
    seen = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            now = host_processes_in_namespace(ns)
            peak[0] = max(peak[0], len(now))
            seen.update(now)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        # The bomb goes to the background at once: the call returns, the bomb grows.
        assert b.run(":(){ :|:& };:")[0] == 0
        time.sleep(2)
        # The sandbox still answers (the limit keeps room for nothing, but the host is fine).
        assert shared_quaverd.ok("GET", f"/sandbox/{b.id}")["state"] == "started"
    finally:
        b.stop()
        stop.set()
        watcher.join()
    if enforced:
        assert 50 < peak[0] <= 1024 + 8, peak[0]
    assert still_alive(seen) == []


# ---- quaverd restarts -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_quaverd_restart_kills_processes_and_rebuilds_the_namespace(make_quaverd, how):
    q = make_quaverd()
    b = new_box(q)
    ns = b.pid_namespace()
    tag = unique_sleep()
    b.out(f"echo kept > /home/daytona/kept.txt; setsid nohup sleep {tag} >/dev/null 2>&1 "
          f"< /dev/null & true")
    wait_until("the sleeper", lambda: host_pids_with_arg(tag), timeout=5)
    before = host_processes_in_namespace(ns)
    if how == "SIGKILL":
        q.kill(signal.SIGKILL)
    else:
        q.stop()
    # The processes go with quaverd, even when it is killed (the init's lifeline).
    wait_until("the sandbox's processes to die",
               lambda: not still_alive(before) and not host_pids_with_arg(tag), timeout=5)
    # Nor do its cgroups stay behind (quaverd's janitor removes them).
    wait_until("the sandbox's cgroups to go", lambda: not sandbox_cgroups(b.id), timeout=10)
    q.start()
    assert q.ok("GET", f"/sandbox/{b.id}")["state"] == "started"
    b = Box(q, q.ok("GET", f"/sandbox/{b.id}"))
    assert b.out("cat /home/daytona/kept.txt; ps -eo comm= | grep -c sleep || true") == \
        "kept\n0\n"


# ---- files, shared with the toolbox's file API ----------------------------------------------


def test_files_written_by_processes_and_by_the_api_are_the_same(box):
    name = f"/home/daytona/from-process-{uuid.uuid4().hex}.txt"
    box.out(f"printf 'made inside\\n' > {name}; mkdir -p /tmp/sub && echo t > /tmp/sub/x")
    r = box.q.request_path("GET", f"{box.base}/files/download?path={name}")
    assert r.status == 200 and r.raw == b"made inside\n"
    r = box.q.request_path("GET", f"{box.base}/files/download?path=/tmp/sub/x")
    assert r.status == 200 and r.raw == b"t\n"
    up = f"/home/daytona/uploaded-{uuid.uuid4().hex}.bin"
    r = box.q.request_path("POST", f"{box.base}/files/upload-v2?path={up}",
                           body=b"uploaded bytes\n",
                           headers={"Content-Type": "application/octet-stream"})
    assert r.status in (200, 201), r.data
    assert box.out(f"cat {up}; stat -c '%u %a' {up}") == "uploaded bytes\n1000 644\n"


# ---- volumes ------------------------------------------------------------------------------


def test_volumes_with_subpaths(shared_quaverd):
    q = shared_quaverd
    vol = create_volume(q, name="rtvol-" + uuid.uuid4().hex[:8])

    def mounted(subpath=None):
        mount = {"volumeId": vol["id"], "mountPath": "/mnt/shared"}
        if subpath is not None:
            mount["subpath"] = subpath
        return new_box(q, volumes=[mount])

    a, b, a2, whole = mounted("a"), mounted("b"), mounted("a"), mounted()
    a.out("echo from-a > /mnt/shared/note")
    assert b.out("ls -A /mnt/shared") == ""
    assert a2.out("cat /mnt/shared/note") == "from-a\n"
    a2.out("echo from-a2 >> /mnt/shared/note")
    assert a.out("cat /mnt/shared/note") == "from-a\nfrom-a2\n"
    assert whole.out("ls /mnt/shared; cat /mnt/shared/a/note") == "a\nb\nfrom-a\nfrom-a2\n"
    # A symlink planted in the volume cannot move another sandbox's mount elsewhere.
    whole.out("mv /mnt/shared/b /mnt/shared/b.old && ln -s /etc /mnt/shared/b")
    q.expect_log(r"its processes cannot start: opening volume .*Not a directory")
    q.expect_log(r"its filesystem is not available")
    b.stop()
    q.request("POST", f"/sandbox/{b.id}/start")
    state = wait_sandbox(q, b.id, ("started", "error"), allow_error=True)["state"]
    if state == "started":
        r = b.execute("ls /mnt/shared")
        assert r.status != 200 or "passwd" not in r.data.get("result", ""), r.data
    data = q.state_dir / "volumes" / vol["id"] / "data"
    assert (data / "a" / "note").read_text() == "from-a\nfrom-a2\n"
    for x in (a, a2, whole):
        x.stop()


# ---- resource limits ----------------------------------------------------------------------


def limits_line(q, sandbox_id):
    lines = [ln for ln in q.log_text().splitlines() if sandbox_id in ln and "namespaces up" in ln]
    assert lines, "no 'namespaces up' line for the sandbox"
    return lines[-1]


def test_limits_are_enforced_or_reported(shared_quaverd):
    q = shared_quaverd
    b = new_box(q, cpu=1, memory=1, disk=3)
    b.out("true")  # the namespaces are up (built after create answered)
    line = limits_line(q, b.id)
    assert "disk not enforced" in line, line
    if re.search(r"memory cgroup v[12] memory\.(limit_in_bytes|max)", line):
        # 1.5 GiB touched page by page in a 1 GiB sandbox: the kernel kills it.
        code, out = b.run("python3 -c \"b = bytearray(1536 * 2**20)\n"
                          "for i in range(0, len(b), 4096): b[i] = 1\nprint('survived')\"")
        assert code != 0 and "survived" not in out, (code, out)
        assert b.out("echo alive") == "alive\n"
    else:
        assert "memory not enforced" in line, line
    if re.search(r"cpu cgroup v1 cpu\.cfs_quota_us", line):
        quota = glob.glob(f"/sys/fs/cgroup/cpu/quaverd-*/{b.id}/cpu.cfs_quota_us")
        assert quota and open(quota[0]).read().strip() == "100000", quota
    elif re.search(r"cpu cgroup v2 cpu\.max", line):
        pass  # the quota file lives in the v2 tree
    else:
        assert "cpu not enforced" in line, line
    # Its processes are in its cgroups (quaverd's relays are not).
    tag = unique_sleep()
    b.out(f"sleep {tag} >/dev/null 2>&1 < /dev/null & true")
    pid = wait_until("the sleeper", lambda: host_pids_with_arg(tag), timeout=5)[0]
    with open(f"/proc/{pid}/cgroup") as f:
        groups = f.read()
    for controller in ("cpu", "memory", "pids"):
        if re.search(rf"{controller} cgroup v1", line):
            assert re.search(rf"^\d+:[^:]*\b{controller}\b[^:]*:.*/{b.id}$", groups, re.M), groups
    b.stop()
    # The sandbox's cgroups go with its processes.
    assert sandbox_cgroups(b.id) == []
