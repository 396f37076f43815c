"""quaverd volumes (../shared/daytona-api.md section 3, issue 2): lifecycle,
lookup by name, subpaths, and refusal to delete while a sandbox uses one."""

import time

from helpers.daytona import (VOLUME_STATES, assert_daytona_error, create_sandbox,
                             create_volume, unique, wait_for, wait_sandbox, wait_volume)
from helpers.quaverd import quote


def volume_gone(q, vid):
    """Deleted: 404, or still listed by id in state "deleted"."""
    status, body = q.request("GET", f"/volumes/{vid}")
    return status == 404 or (status == 200 and body.get("state") == "deleted")


def test_volume_goes_pending_create_then_ready(make_quaverd):
    q = make_quaverd("--transition-delay", "500")
    name = unique("vol")
    dto = q.ok("POST", "/volumes", json={"name": name})
    assert dto["state"] == "pending_create"
    assert dto["name"] == name
    for key in ("id", "name", "organizationId", "state", "createdAt", "updatedAt",
                "lastUsedAt", "errorReason"):
        assert key in dto, f"{key} missing from {dto}"
    ready = wait_volume(q, dto["id"], "ready", timeout=10)
    assert ready["id"] == dto["id"]
    assert (q.state_dir / "volumes" / dto["id"] / "data").is_dir()
    assert (q.state_dir / "volumes" / dto["id"] / "meta.json").is_file()


def test_volume_states_are_daytona_states(shared_quaverd):
    dto = create_volume(shared_quaverd, wait=False)
    assert dto["state"] in VOLUME_STATES


def test_get_volume_by_id_and_by_name(shared_quaverd):
    q = shared_quaverd
    name = unique("byname")
    dto = create_volume(q, name=name)
    assert q.ok("GET", f"/volumes/{dto['id']}")["name"] == name
    assert q.ok("GET", f"/volumes/by-name/{name}")["id"] == dto["id"]


def test_unknown_volume_name_is_a_real_404(shared_quaverd):
    # volume.get(name, create=true) relies on it to create the volume.
    assert_daytona_error(shared_quaverd.request("GET", "/volumes/by-name/" + unique("none")), 404)


def test_volume_list_is_a_plain_array(shared_quaverd):
    q = shared_quaverd
    a = create_volume(q)
    b = create_volume(q)
    listed = q.ok("GET", "/volumes")
    assert isinstance(listed, list)
    ids = [v["id"] for v in listed]
    assert a["id"] in ids and b["id"] in ids
    assert len(ids) == len(set(ids))


def test_delete_volume(shared_quaverd):
    q = shared_quaverd
    dto = create_volume(q)
    status, _ = q.request("DELETE", f"/volumes/{dto['id']}")
    assert status == 200
    wait_for("the volume to be deleted", lambda: volume_gone(q, dto["id"]))
    assert dto["id"] not in [v["id"] for v in q.ok("GET", "/volumes")]
    assert q.request("GET", f"/volumes/by-name/{dto['name']}").status == 404
    wait_for("the volume directory to go",
             lambda: not (q.state_dir / "volumes" / dto["id"]).exists())


def test_volume_name_is_free_again_after_delete(shared_quaverd):
    q = shared_quaverd
    name = unique("again")
    first = create_volume(q, name=name)
    q.ok("DELETE", f"/volumes/{first['id']}")
    wait_for("the volume to be deleted", lambda: volume_gone(q, first["id"]))
    second = create_volume(q, name=name)
    assert second["id"] != first["id"]


def test_sandbox_mounts_volume_by_name(shared_quaverd):
    q = shared_quaverd
    vol = create_volume(q)
    sbx = create_sandbox(q, volumes=[{"volumeId": vol["name"], "mountPath": "/mnt/v"}])
    assert sbx["volumes"][0]["volumeId"] in (vol["id"], vol["name"])
    assert sbx["volumes"][0]["mountPath"] == "/mnt/v"


def test_subpath_directory_is_created(shared_quaverd):
    q = shared_quaverd
    vol = create_volume(q)
    create_sandbox(q, volumes=[{"volumeId": vol["id"], "mountPath": "/home/daytona/data",
                                "subpath": "projects/alpha"}])
    assert (q.state_dir / "volumes" / vol["id"] / "data" / "projects" / "alpha").is_dir()


def test_subpath_escaping_the_volume_is_refused(shared_quaverd):
    q = shared_quaverd
    vol = create_volume(q)
    for subpath in ("../../..", "a/../../b", "/etc"):
        status, body = q.request("POST", "/sandbox", json={
            "env": {}, "labels": {},
            "volumes": [{"volumeId": vol["id"], "mountPath": "/m", "subpath": subpath}]})
        if status == 200:
            # Accepted only if it stays inside the volume's data directory.
            data = (q.state_dir / "volumes" / vol["id"] / "data").resolve()
            assert not (q.state_dir / "volumes" / vol["id"] / "etc").exists()
            assert not (data.parent.parent / "b").exists()
            q.ok("DELETE", f"/sandbox/{body['id']}")
        else:
            assert_daytona_error((status, body), 400)


def test_delete_refused_while_a_sandbox_uses_the_volume(shared_quaverd):
    q = shared_quaverd
    vol = create_volume(q)
    sbx = create_sandbox(q, volumes=[{"volumeId": vol["id"], "mountPath": "/v"}])
    body = assert_daytona_error(q.request("DELETE", f"/volumes/{vol['id']}"), 400)
    assert body["message"]
    # A stopped sandbox still uses it.
    q.ok("POST", f"/sandbox/{sbx['id']}/stop")
    wait_sandbox(q, sbx["id"], "stopped")
    assert_daytona_error(q.request("DELETE", f"/volumes/{vol['id']}"), 400)
    assert q.ok("GET", f"/volumes/{vol['id']}")["state"] == "ready"


def test_delete_allowed_once_the_sandbox_is_deleted(shared_quaverd):
    q = shared_quaverd
    vol = create_volume(q)
    (q.state_dir / "volumes" / vol["id"] / "data" / "keep.txt").write_text("x")
    sbx = create_sandbox(q, volumes=[{"volumeId": vol["id"], "mountPath": "/v"}])
    assert_daytona_error(q.request("DELETE", f"/volumes/{vol['id']}"), 400)
    q.ok("DELETE", f"/sandbox/{sbx['id']}")
    wait_for("the sandbox to be gone",
             lambda: q.request("GET", f"/sandbox/{sbx['id']}").status == 404)
    status, body = q.request("DELETE", f"/volumes/{vol['id']}")
    assert status == 200, (status, body)
    wait_for("the volume to be deleted", lambda: volume_gone(q, vol["id"]))


def test_volume_data_survives_sandbox_delete(shared_quaverd):
    q = shared_quaverd
    vol = create_volume(q)
    sbx = create_sandbox(q, volumes=[{"volumeId": vol["id"], "mountPath": "/v",
                                      "subpath": "s"}])
    (q.state_dir / "volumes" / vol["id"] / "data" / "s" / "f.txt").write_text("data")
    q.ok("DELETE", f"/sandbox/{sbx['id']}")
    wait_for("the sandbox to be gone",
             lambda: q.request("GET", f"/sandbox/{sbx['id']}").status == 404)
    time.sleep(0.2)
    assert (q.state_dir / "volumes" / vol["id"] / "data" / "s" / "f.txt").read_text() == "data"


def test_volume_survives_restart(quaverd):
    q = quaverd
    vol = create_volume(q, name=unique("persist"))
    (q.state_dir / "volumes" / vol["id"] / "data" / "f").write_text("kept")
    q.restart()
    got = q.ok("GET", f"/volumes/by-name/{quote(vol['name'])}")
    assert got["id"] == vol["id"] and got["state"] == "ready"
    assert (q.state_dir / "volumes" / vol["id"] / "data" / "f").read_text() == "kept"


def test_volume_without_name_is_named_after_its_id(shared_quaverd):
    dto = shared_quaverd.ok("POST", "/volumes", json={})
    assert dto["name"] == dto["id"]


def test_volume_list_accepts_include_deleted(shared_quaverd):
    q = shared_quaverd
    vol = create_volume(q)
    listed = q.ok("GET", "/volumes?includeDeleted=true")
    assert vol["id"] in [v["id"] for v in listed]


def test_volume_used_by_sandbox_records_last_use(shared_quaverd):
    q = shared_quaverd
    vol = create_volume(q)
    assert vol["lastUsedAt"] is None
    create_sandbox(q, volumes=[{"volumeId": vol["id"], "mountPath": "/v"}])
    assert q.ok("GET", f"/volumes/{vol['id']}")["lastUsedAt"]
