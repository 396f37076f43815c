"""quaverd snapshots (../shared/daytona-api.md sections 0.6 and 4, issue 2):
from a sandbox, list/get/delete, and sandboxes made from one."""

import time

from helpers.daytona import (SNAPSHOT_STATES, assert_daytona_error, create_sandbox,
                             get_sandbox, snapshot_sandbox, unique, wait_for, wait_sandbox,
                             wait_snapshot)


def home(q, sandbox_id):
    return q.state_dir / "sandboxes" / sandbox_id / "root" / "home" / "daytona"


def test_snapshot_of_started_sandbox_shows_snapshotting_then_started(make_quaverd):
    q = make_quaverd("--transition-delay", "600")
    sbx = create_sandbox(q)
    name = unique("snap")
    resp = q.ok("POST", f"/sandbox/{sbx['id']}/snapshot", json={"name": name})
    assert resp["id"] == sbx["id"]
    assert resp["state"] == "snapshotting"
    assert get_sandbox(q, sbx["id"])["state"] == "snapshotting"
    pending = q.ok("GET", f"/snapshots/{name}")
    assert pending["state"] in SNAPSHOT_STATES - {"active"}, pending["state"]
    snap = wait_snapshot(q, name, "active", timeout=10)
    assert snap["sourceSandboxId"] == sbx["id"]
    wait_sandbox(q, sbx["id"], "started", timeout=10)


def test_snapshot_of_stopped_sandbox_returns_it_to_stopped(shared_quaverd):
    q = shared_quaverd
    sbx = create_sandbox(q)
    q.ok("POST", f"/sandbox/{sbx['id']}/stop")
    wait_sandbox(q, sbx["id"], "stopped")
    snap, after = snapshot_sandbox(q, sbx["id"], unique("snap"))
    assert after["state"] == "stopped"
    assert snap["sourceSandboxId"] == sbx["id"]


def test_snapshot_dto_and_storage(shared_quaverd):
    q = shared_quaverd
    sbx = create_sandbox(q)
    name = unique("dto")
    snap, _ = snapshot_sandbox(q, sbx["id"], name)
    for key in ("id", "name", "state", "size", "cpu", "gpu", "mem", "disk", "entrypoint",
                "createdAt", "updatedAt", "lastUsedAt", "sourceSandboxId", "errorReason",
                "general"):
        assert key in snap, f"{key} missing from {snap}"
    assert snap["name"] == name
    assert snap["general"] is False
    assert (q.state_dir / "snapshots" / snap["id"] / "image.tar").is_file()
    assert (q.state_dir / "snapshots" / snap["id"] / "meta.json").is_file()


def test_get_snapshot_by_id_and_by_name(shared_quaverd):
    q = shared_quaverd
    sbx = create_sandbox(q)
    name = unique("get")
    snap, _ = snapshot_sandbox(q, sbx["id"], name)
    assert q.ok("GET", f"/snapshots/{snap['id']}")["name"] == name
    assert q.ok("GET", f"/snapshots/{name}")["id"] == snap["id"]


def test_list_snapshots_is_paged(quaverd):
    q = quaverd
    assert q.ok("GET", "/snapshots") == {"items": [], "total": 0, "page": 1, "totalPages": 0}
    sbx = create_sandbox(q)
    names = [unique("list") for _ in range(3)]
    for name in names:
        snapshot_sandbox(q, sbx["id"], name)
    everything = q.ok("GET", "/snapshots")
    assert everything["total"] == 3
    assert sorted(s["name"] for s in everything["items"]) == sorted(names)
    first = q.ok("GET", "/snapshots?page=1&limit=2")
    second = q.ok("GET", "/snapshots?page=2&limit=2")
    assert first["total"] == second["total"] == 3
    assert first["totalPages"] == second["totalPages"] == 2
    assert (first["page"], second["page"]) == (1, 2)
    assert len(first["items"]) == 2 and len(second["items"]) == 1
    paged = [s["id"] for s in first["items"] + second["items"]]
    assert sorted(paged) == sorted(s["id"] for s in everything["items"])


def test_list_snapshots_filters_by_name_part(shared_quaverd):
    q = shared_quaverd
    sbx = create_sandbox(q)
    tag = unique("part")
    snapshot_sandbox(q, sbx["id"], f"a-{tag}-one")
    snapshot_sandbox(q, sbx["id"], f"b-{tag}-two")
    got = q.ok("GET", f"/snapshots?name={tag.upper()}")
    assert sorted(s["name"] for s in got["items"]) == [f"a-{tag}-one", f"b-{tag}-two"]
    got = q.ok("GET", f"/snapshots?name={tag}-tw")
    assert [s["name"] for s in got["items"]] == [f"b-{tag}-two"]
    assert got["total"] == 1


def test_list_snapshots_filters_by_source_sandbox(shared_quaverd):
    """daytona-api.md section 4: GET /snapshots?sourceSandboxId=..."""
    q = shared_quaverd
    mine = create_sandbox(q)
    other = create_sandbox(q)
    snap, _ = snapshot_sandbox(q, mine["id"], unique("mine"))
    snapshot_sandbox(q, other["id"], unique("other"))
    got = q.ok("GET", f"/snapshots?sourceSandboxId={mine['id']}")
    assert [s["id"] for s in got["items"]] == [snap["id"]]
    assert got["total"] == 1


def test_delete_snapshot(shared_quaverd):
    q = shared_quaverd
    sbx = create_sandbox(q)
    snap, _ = snapshot_sandbox(q, sbx["id"], unique("del"))
    status, _ = q.request("DELETE", f"/snapshots/{snap['id']}")
    assert status == 200
    wait_for("the snapshot to go",
             lambda: q.request("GET", f"/snapshots/{snap['id']}").status == 404)
    assert q.request("GET", f"/snapshots/{snap['name']}").status == 404
    wait_for("the snapshot directory to go",
             lambda: not (q.state_dir / "snapshots" / snap["id"]).exists())


def test_sandbox_from_snapshot_has_the_same_files(shared_quaverd):
    q = shared_quaverd
    src = create_sandbox(q)
    (home(q, src["id"]) / "hello.txt").write_text("from the source\n")
    (home(q, src["id"]) / "dir").mkdir()
    (home(q, src["id"]) / "dir" / "nested.bin").write_bytes(bytes(range(256)) * 400)
    name = unique("clone")
    snap, _ = snapshot_sandbox(q, src["id"], name)
    # Later changes to the source do not leak into the snapshot.
    (home(q, src["id"]) / "hello.txt").write_text("changed afterwards\n")

    for ref in (name, snap["id"]):
        dto = create_sandbox(q, snapshot=ref)
        assert dto["snapshot"] in (name, snap["id"])
        new_home = home(q, dto["id"])
        assert (new_home / "hello.txt").read_text() == "from the source\n"
        assert (new_home / "dir" / "nested.bin").read_bytes() == bytes(range(256)) * 400
    # The copies are independent of each other and of the source.
    assert (home(q, src["id"]) / "hello.txt").read_text() == "changed afterwards\n"


def test_sandbox_from_snapshot_takes_its_resources(shared_quaverd):
    q = shared_quaverd
    src = create_sandbox(q, cpu=2, memory=3, disk=7)
    snap, _ = snapshot_sandbox(q, src["id"], unique("res"))
    dto = create_sandbox(q, snapshot=snap["name"])
    assert (dto["cpu"], dto["memory"], dto["disk"]) == (snap["cpu"], snap["mem"], snap["disk"])


def test_duplicate_snapshot_name_is_409(shared_quaverd):
    q = shared_quaverd
    sbx = create_sandbox(q)
    name = unique("dup")
    snapshot_sandbox(q, sbx["id"], name)
    body = assert_daytona_error(
        q.request("POST", f"/sandbox/{sbx['id']}/snapshot", json={"name": name}), 409)
    assert name in body["message"]
    assert get_sandbox(q, sbx["id"])["state"] == "started"


def test_snapshots_survive_restart(quaverd):
    q = quaverd
    sbx = create_sandbox(q)
    (home(q, sbx["id"]) / "f").write_text("kept")
    snap, _ = snapshot_sandbox(q, sbx["id"], unique("persist"))
    q.restart()
    got = q.ok("GET", f"/snapshots/{snap['id']}")
    assert got["state"] == "active" and got["name"] == snap["name"]
    dto = create_sandbox(q, snapshot=snap["name"])
    assert (home(q, dto["id"]) / "f").read_text() == "kept"


def test_deleting_source_sandbox_keeps_snapshot(shared_quaverd):
    q = shared_quaverd
    sbx = create_sandbox(q)
    (home(q, sbx["id"]) / "f").write_text("outlives its source")
    snap, _ = snapshot_sandbox(q, sbx["id"], unique("orphan"))
    q.ok("DELETE", f"/sandbox/{sbx['id']}")
    wait_for("the sandbox to be gone",
             lambda: q.request("GET", f"/sandbox/{sbx['id']}").status == 404)
    time.sleep(0.1)
    assert q.ok("GET", f"/snapshots/{snap['id']}")["state"] == "active"
    dto = create_sandbox(q, snapshot=snap["id"])
    assert (home(q, dto["id"]) / "f").read_text() == "outlives its source"
