"""quaverfs: the lifecycle of sandboxes, volumes and snapshots through a real
mount, and every node of a sandbox (fs-layout.md), as a shell user drives them."""

import errno
import json
import os
import re
import shlex
import signal
import subprocess
import time

import pytest

from fsmount import *  # noqa: F401,F403 (Mount, fixtures, helpers)


def info(m, name):
    return json.loads(m.read("sandboxes", name, "info.json"))


# ---- the lifecycle script ---------------------------------------------------

def test_sandbox_lifecycle_keeps_data_through_archive(mount):
    m, qd = mount, mount.qd
    r = m.sh("mkdir sandboxes/life && cat sandboxes/life/state")
    assert r.stdout == "started\n"
    sid = m.read("sandboxes/life/id").strip()
    rec = qd.get("sandbox", "life")
    assert rec is not None and rec["id"] == sid and rec["state"] == "started"
    # files/ is later work: plant a file in the sandbox's storage directly
    qd.plant(sid, "kept across stop, archive and start\n")

    for word, reached in [("stop", "stopped"), ("start", "started"), ("stop", "stopped"),
                          ("archive", "archived"), ("start", "started")]:
        r = m.sh(f"echo {word} > sandboxes/life/state; cat sandboxes/life/state")
        assert r.stdout == reached + "\n", f"after echo {word}: {r!r}"
        assert qd.get("sandbox", "life")["state"] == reached, f"backend after echo {word}"
        if reached == "archived":
            # the tree really was packed away, so the next start restores it
            assert qd.planted(sid) is None
    assert qd.planted(sid) == "kept across stop, archive and start\n"

    m.sh("rmdir sandboxes/life")
    assert "life" not in m.listdir("sandboxes")
    assert errno_of(os.stat, m.path("sandboxes", "life")) == errno.ENOENT
    assert m.errno_read("sandboxes/life/state") == errno.ENOENT
    assert qd.request("GET", f"/sandbox/{sid}").status == 404
    assert qd.request("GET", "/sandbox/life").status == 404


def test_error_state_and_recover(make_mount):
    """A sandbox whose filesystem vanished while quaverd was down comes back
    in error (doc/quaverd.md "Crash recovery"); the mount shows it and
    `echo recover > state` brings it back."""
    m = make_mount(port=free_port())
    qd = m.qd
    m.sh("mkdir sandboxes/broken")
    sid = m.read("sandboxes/broken/id").strip()
    qd.stop()
    import shutil
    shutil.rmtree(qd.sandbox_root(sid))
    qd.start()
    qd.expect_log(r"(?i)broken|" + sid)
    rec = qd.get("sandbox", "broken")
    assert rec["state"] == "error" and rec["errorReason"]
    m.write("control", "flush\n")
    assert m.read("sandboxes/broken/state") == "error\n"
    assert m.read("sandboxes/broken/error") == rec["errorReason"] + "\n"
    r = m.sh("echo recover > sandboxes/broken/state && cat sandboxes/broken/state "
             "sandboxes/broken/error")
    assert r.stdout == "started\n\n"
    assert qd.get("sandbox", "broken")["state"] == "started"


def test_volume_mkdir_rmdir(mount):
    m, qd = mount, mount.qd
    r = m.sh("mkdir volumes/vol1 && cat volumes/vol1/state && ls volumes")
    assert r.stdout.splitlines()[0] == "ready"
    assert "vol1" in r.stdout.splitlines()[1:]
    rec = qd.get("volume", "vol1")
    assert rec is not None and rec["state"] == "ready"
    assert m.read("volumes/vol1/id") == rec["id"] + "\n"
    vinfo = json.loads(m.read("volumes/vol1/info.json"))
    assert vinfo["id"] == rec["id"] and vinfo["name"] == "vol1"

    m.sh("rmdir volumes/vol1")
    assert "vol1" not in m.listdir("volumes")
    assert errno_of(os.stat, m.path("volumes", "vol1")) == errno.ENOENT
    assert qd.get("volume", "vol1") is None


def test_snapshot_through_node_and_control_then_sandbox_from_it(mount):
    m, qd = mount, mount.qd
    m.sh("mkdir sandboxes/origin")
    origin_id = m.read("sandboxes/origin/id").strip()
    qd.plant(origin_id, "captured by the snapshot\n")

    # through the sandbox's snapshot node: returns once the snapshot is active
    m.sh("echo snapA > sandboxes/origin/snapshot")
    assert m.read("snapshots/snapA/state") == "active\n"
    srec = qd.get("snapshot", "snapA")
    assert srec is not None and srec["state"] == "active"
    assert m.read("snapshots/snapA/id") == srec["id"] + "\n"
    sinfo = json.loads(m.read("snapshots/snapA/info.json"))
    assert sinfo["id"] == srec["id"] and sinfo["name"] == "snapA"
    assert sinfo.get("sourceSandboxId") == origin_id
    assert "snapA" in m.read("sandboxes/origin/snapshot").splitlines()
    assert m.read("sandboxes/origin/state") == "started\n"  # back to where it was

    # a new sandbox from it, through control
    m.sh("echo 'create sandbox B snapshot=snapA' > control")
    assert m.read("sandboxes/B/state") == "started\n"
    b = qd.get("sandbox", "B")
    assert b["snapshot"] in ("snapA", srec["id"])
    assert info(m, "B")["snapshot"] in ("snapA", srec["id"])
    assert qd.planted(b["id"]) == "captured by the snapshot\n"

    # through control
    m.sh("echo 'snapshot origin snapB' > control")
    assert m.read("snapshots/snapB/state") == "active\n"
    assert qd.get("snapshot", "snapB")["state"] == "active"
    assert {"snapA", "snapB"} <= set(m.listdir("snapshots"))

    m.sh("rmdir snapshots/snapB")
    assert "snapB" not in m.listdir("snapshots")
    assert qd.get("snapshot", "snapB") is None
    assert qd.get("snapshot", "snapA") is not None


def test_every_creation_option_through_control(mount):
    m, qd = mount, mount.qd
    m.sh("echo 'create volume data1' > control")
    assert m.read("volumes/data1/state") == "ready\n"
    vol_id = qd.get("volume", "data1")["id"]

    cmd = ("create sandbox full language=typescript cpu=2 memory=4 disk=10 autostop=30 "
           "autoarchive=120 autodelete=600 public=true user=alice volume=data1:/data:sub "
           "env=K=V env=\"GREETING=hello world\" label=team=core label='note=two words'")
    m.sh(f"echo {shlex.quote(cmd)} > control")
    assert m.read("sandboxes/full/state") == "started\n"

    i = info(m, "full")
    assert i["name"] == "full"
    assert i["labels"].get("code-toolbox-language") == "typescript"
    assert (i["cpu"], i["memory"], i["disk"]) == (2, 4, 10)
    assert i["autoStopInterval"] == 30
    assert i["autoArchiveInterval"] == 120
    assert i["autoDeleteInterval"] == 600
    assert i["public"] is True
    assert i["user"] == "alice"
    assert len(i["volumes"]) == 1
    v = i["volumes"][0]
    assert v["volumeId"] in (vol_id, "data1")
    assert v["mountPath"] == "/data"
    assert v.get("subpath") == "sub"
    assert i["labels"].get("team") == "core"
    assert i["labels"].get("note") == "two words"
    # env values may be redacted in info.json (secrets); the keys are there
    assert set(i["env"]) == {"K", "GREETING"}
    # the values, as the backend holds them and as env/ shows them
    rec = qd.get("sandbox", "full")
    assert rec["env"] == {"K": "V", "GREETING": "hello world"}
    assert m.listdir("sandboxes/full/env") == ["GREETING", "K"]
    assert m.read("sandboxes/full/env/K") == "V\n"
    assert m.read("sandboxes/full/env/GREETING") == "hello world\n"


def test_plain_mkdir_honours_defaults(mount):
    m, qd = mount, mount.qd
    assert m.read("defaults") == "language=python\n"  # what a fresh mount starts with
    m.sh("echo 'language=javascript autostop=45 label=owner=me label=tier=gold' > defaults")
    lines = m.read("defaults").splitlines()
    assert {"language=javascript", "autostop=45", "label=owner=me",
            "label=tier=gold"} <= set(lines), lines

    m.sh("mkdir sandboxes/plain")
    i = info(m, "plain")
    assert i["labels"].get("code-toolbox-language") == "javascript"
    assert i["autoStopInterval"] == 45
    assert i["labels"].get("owner") == "me" and i["labels"].get("tier") == "gold"

    # create through control uses its own options only
    ref = qd.create_sandbox("reference")  # the backend's own defaults
    m.sh("echo 'create sandbox own' > control")
    i = info(m, "own")
    assert i["autoStopInterval"] == ref["autoStopInterval"]
    assert i["labels"] == {"code-toolbox-language": "python"}

    # the write grammar mirrors what a read shows: writing each line back changes nothing
    before = m.read("defaults")
    for line in before.splitlines():
        m.write("defaults", line + "\n")
    assert m.read("defaults") == before

    # label=K=V replaces K; key= clears one; label= clears every label
    m.sh("echo label=owner=you > defaults")
    lines = m.read("defaults").splitlines()
    assert "label=owner=you" in lines and "label=owner=me" not in lines, lines
    m.sh("echo autostop= > defaults")
    lines = m.read("defaults").splitlines()
    assert not any(line.startswith("autostop=") for line in lines), lines
    assert "language=javascript" in lines
    m.sh("echo label= > defaults")
    lines = m.read("defaults").splitlines()
    assert not any(line.startswith("label=") for line in lines), lines
    m.sh("mkdir sandboxes/plain2")
    i = info(m, "plain2")
    assert i["autoStopInterval"] == ref["autoStopInterval"]
    assert i["labels"] == {"code-toolbox-language": "javascript"}


# ---- the nodes of one sandbox (one mount for the module: these tests only
# touch their own node of sandbox "nodes") -----------------------------------

@pytest.fixture(scope="module")
def nodes(tmp_path_factory, request):
    yield from mount_session(tmp_path_factory.mktemp("nodes"), request)


@pytest.fixture(scope="module")
def sbx(nodes):
    if "nodes" not in nodes.listdir("sandboxes"):
        nodes.sh("echo 'create sandbox nodes language=python env=TOKENLESS=plain "
                 "label=keep=me' > control")
    return "sandboxes/nodes"


def test_labels_files(nodes, sbx):
    m, qd = nodes, nodes.qd
    r = m.sh(f"cd {sbx} && echo v > labels/k && cat labels/k && ls labels")
    out = r.stdout.splitlines()
    assert out[0] == "v"
    assert {"k", "keep", "code-toolbox-language"} <= set(out[1:])
    assert qd.get("sandbox", "nodes")["labels"].get("k") == "v"
    assert m.read(sbx, "labels", "keep") == "me\n"
    assert m.read(sbx, "labels", "code-toolbox-language") == "python\n"

    m.sh(f"echo 'second value' > {sbx}/labels/k")
    assert m.read(sbx, "labels", "k") == "second value\n"

    # touch makes a label with an empty value
    m.sh(f"touch {sbx}/labels/empty")
    assert m.read(sbx, "labels", "empty") == "\n"
    assert qd.get("sandbox", "nodes")["labels"].get("empty") == ""
    m.sh(f"rm {sbx}/labels/empty")

    r = m.sh(f"cd {sbx} && rm labels/k && ls labels")
    assert "k" not in r.stdout.splitlines()
    labels = qd.get("sandbox", "nodes")["labels"]
    assert "k" not in labels
    assert labels.get("keep") == "me" and labels.get("code-toolbox-language") == "python"
    assert m.errno_read(f"{sbx}/labels/k") == errno.ENOENT


def test_env_files(nodes, sbx):
    m = nodes
    assert m.listdir(f"{sbx}/env") == ["TOKENLESS"]
    assert m.read(sbx, "env", "TOKENLESS") == "plain\n"


@pytest.mark.parametrize("node,field,values", [
    ("autostop", "autoStopInterval", ["30", "0"]),
    ("autoarchive", "autoArchiveInterval", ["90"]),
    ("autodelete", "autoDeleteInterval", ["120", "-1"]),
])
def test_interval_read_write(nodes, sbx, node, field, values):
    m, qd = nodes, nodes.qd
    assert m.read(sbx, node) == f"{qd.get('sandbox', 'nodes')[field]}\n"
    for v in values:
        r = m.sh(f"echo {v} > {sbx}/{node} && cat {sbx}/{node}")
        assert r.stdout == v + "\n"
        assert qd.get("sandbox", "nodes")[field] == int(v)


def test_resources_lines(nodes, sbx):
    rec = nodes.qd.get("sandbox", "nodes")
    lines = nodes.read(sbx, "resources").splitlines()
    want = [f"{k} {rec.get(k) or 0}" for k in ("cpu", "memory", "disk", "gpu")]
    assert sorted(lines) == sorted(want)


def test_port_gives_preview_url(nodes, sbx):
    m, qd = nodes, nodes.qd
    sid = m.read(sbx, "id").strip()
    want = qd.ok("GET", f"/sandbox/{sid}/ports/3000/preview-url")["url"]
    assert m.read(sbx, "ports", "3000") == want + "\n"
    assert m.listdir(f"{sbx}/ports") == []
    for bad in ("0", "65536", "http", "03000", "+3000", "-1"):
        assert errno_of(os.stat, m.path(sbx, "ports", bad)) == errno.ENOENT, bad


def test_id_info_and_error_nodes(nodes, sbx):
    m, qd = nodes, nodes.qd
    rec = qd.get("sandbox", "nodes")
    assert m.read(sbx, "id") == rec["id"] + "\n"
    i = json.loads(m.read(sbx, "info.json"))
    assert i["id"] == rec["id"] and i["name"] == "nodes"
    assert m.read(sbx, "error") == "\n"
    assert m.read(sbx, "snapshot") == "\n"  # none taken yet


def test_id_symlink_resolves_to_same_sandbox_listed_once(nodes, sbx):
    m, qd = nodes, nodes.qd
    sid = qd.get("sandbox", "nodes")["id"]
    link = m.path("sandboxes", sid)
    assert call(os.readlink, link) == "nodes"
    assert call(os.path.samefile, link, m.path("sandboxes", "nodes"))
    assert m.read("sandboxes", sid, "state") == "started\n"
    assert m.read("sandboxes", sid, "id") == sid + "\n"
    listing = m.listdir("sandboxes")
    assert listing.count("nodes") == 1
    assert sid not in listing


def test_status_node(nodes, sbx):
    m, qd = nodes, nodes.qd
    for d in ("sandboxes", "volumes", "snapshots"):
        m.listdir(d)  # counts are known once listed
    text = m.read("status")
    assert text.endswith("\n")
    st = m.status()
    assert st["backend"] == qd.url
    assert st["kind"] in ("local", "remote")
    version = run([quaverfs_bin(), "--version"], timeout=10)
    assert st["version"] and st["version"] in version.stdout + version.stderr
    assert st["reachable"] == "yes"
    assert int(st["sandboxes"]) == len(qd.list_sandboxes())
    assert int(st["volumes"]) == len(qd.list_volumes())
    assert int(st["snapshots"]) == len(qd.list_snapshots())


def test_root_nodes_and_control_grammar(nodes):
    m = nodes
    assert {"sandboxes", "volumes", "snapshots", "status", "defaults", "control",
            "error"} <= set(m.listdir("."))
    grammar = m.read("control")
    assert grammar.endswith("\n")
    for word in ("create sandbox", "create volume", "snapshot", "flush"):
        assert word in grammar, word
    m.write("control", "flush\n")


# ---- ways to mount ------------------------------------------------------------

def test_embedded_mode_starts_quaverd(make_mount):
    m = make_mount(mode="embedded")
    assert m.embedded_pids, "no quaverd holds the state dir's lock"
    st = m.status()
    assert st["kind"] == "local"
    assert st["backend"] == m.qd.url
    assert st["reachable"] == "yes"
    r = m.sh("mkdir sandboxes/e1 && cat sandboxes/e1/state")
    assert r.stdout == "started\n"
    assert m.qd.get("sandbox", "e1")["state"] == "started"
    m.sh("rmdir sandboxes/e1")
    assert m.qd.get("sandbox", "e1") is None


def test_embedded_mode_reuses_running_quaverd(make_mount):
    m = make_mount(mode="embedded", reuse=True)
    assert m.qd.lock_holders() == [m.qd.pid()], "a second quaverd was started"
    assert m.status()["backend"] == m.qd.url
    mark = m.qd.log_mark()
    m.sh("mkdir sandboxes/e2")
    assert m.qd.get("sandbox", "e2")["state"] == "started"
    assert any(meth == "POST" for meth, _ in m.qd.requests_since(mark))


def test_key_file_mode(make_mount):
    m = make_mount(mode="key_file")
    r = m.sh("mkdir sandboxes/kf && cat sandboxes/kf/state && ls sandboxes")
    assert r.stdout.splitlines() == ["started", "kf"]


def test_source_argument_names_the_backend(make_mount):
    """How mount(8) runs it: quaverfs SOURCE MOUNTPOINT -o OPTIONS."""
    first = make_mount()  # a quaverd to point at, and its key
    m = Mount(first.base / "by-source", fs_options=[])
    m.mode = "source"
    m.command = lambda: [quaverfs_bin(), first.qd.url, str(m.mnt), "-f"]
    m.environment = lambda: {**clean_env(), "DAYTONA_API_KEY": first.qd.token,
                             "XDG_DATA_HOME": str(m.base / "xdg")}
    try:
        m.start()
        assert m.status()["backend"] == first.qd.url
        r = m.sh("mkdir sandboxes/src && cat sandboxes/src/state")
        assert r.stdout == "started\n"
        assert first.qd.get("sandbox", "src")["state"] == "started"
        assert mount_source(m.mnt) == f"quaverfs#{first.qd.url}"
    finally:
        problems = m.finish()
    assert not problems, problems


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_cleanly(make_mount, sig):
    m = make_mount()
    m.sh("ls sandboxes")
    m.proc.send_signal(sig)
    assert m.proc.wait(5) == 0
    assert not m.mounted


def process_serving(mnt):
    """Pid of the quaverfs process whose command line names @mnt, or None."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if not zombie and argv[0].endswith(b"quaverfs") and str(mnt).encode() in argv:
            return int(pid)
    return None


def test_background_mode(tmp_path):
    """Without -f quaverfs returns once mounted and serves from the
    background, logging to -o log_file=; fusermount3 -u ends it."""
    qd = Backend(tmp_path / "qd")
    qd.start()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log = tmp_path / "bg.log"
    env = clean_env()
    env["DAYTONA_API_KEY"] = qd.token
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    pid = None
    try:
        r = run([quaverfs_bin(), "-o", f"api_url={qd.url}", "-o", f"log_file={log}", str(mnt)],
                env=env, timeout=20)
        assert r.returncode == 0, r
        assert mountinfo_entry(mnt) is not None, "returned before the mount was there"
        pid = process_serving(mnt)
        assert pid is not None, "no quaverfs process in the background"
        r = run(["bash", "-c", "mkdir sandboxes/bg && cat sandboxes/bg/state"], cwd=mnt,
                timeout=30)
        assert r.stdout == "started\n", r
        r = run(["fusermount3", "-u", str(mnt)], timeout=10)
        assert r.returncode == 0, r
        deadline = time.monotonic() + 5
        while process_serving(mnt) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_serving(mnt) is None, "still running 5 s after fusermount3 -u"
        text = log.read_text()
        assert "mounted" in text or text.strip(), "nothing in the log file"
        bad = [line for line in text.splitlines()
               if re.search(r"\] (error|warn): ", line) or not re.match(r"^\S+ quaverfs\[", line)]
        assert not bad, bad
        assert qd.token not in text
    finally:
        if mountinfo_entry(mnt) is not None:
            run(["fusermount3", "-uz", str(mnt)], timeout=10)
        if pid is not None and process_serving(mnt) == pid:
            os.kill(pid, signal.SIGKILL)
        problems = qd.finish()
    assert not problems, problems


def test_help_and_version():
    r = run([quaverfs_bin(), "--help"], timeout=10)
    assert r.returncode == 0, r
    assert "api_url" in r.stdout + r.stderr
    r = run([quaverfs_bin(), "--version"], timeout=10)
    assert r.returncode == 0, r
    assert re.search(r"\d+\.\d+", r.stdout + r.stderr), r
