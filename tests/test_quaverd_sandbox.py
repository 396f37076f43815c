"""quaverd sandboxes over HTTP: create, get, list, the state machine, labels,
intervals, URLs and auto-stop (../shared/daytona-api.md section 2,
doc/quaverd.md, issue 2)."""

import json
import shutil
import threading
import time
import urllib.parse

import pytest

from helpers.daytona import (SANDBOX_STATES, assert_daytona_error, create_sandbox,
                             create_volume, get_sandbox, list_all_sandboxes, unique,
                             wait_for, wait_sandbox)
from helpers.quaverd import quote


def home(q, sandbox_id):
    return q.state_dir / "sandboxes" / sandbox_id / "root" / "home" / "daytona"


def plant(q, sandbox_id, name="planted.txt", content="kept across the state machine\n"):
    """Writes a file into the sandbox's filesystem directly on disk (the
    toolbox comes in a later issue)."""
    path = home(q, sandbox_id) / name
    path.write_text(content)
    return path


# ---- create and get ---------------------------------------------------------


def test_create_echoes_every_field(quaverd):
    q = quaverd
    vol = create_volume(q)
    body = {
        "name": unique("echo"),
        "labels": {"code-toolbox-language": "typescript", "team": "fs"},
        "env": {"GREETING": "hello", "EMPTY": ""},
        "cpu": 2, "memory": 4, "disk": 8,
        "autoStopInterval": 30, "autoArchiveInterval": 120, "autoDeleteInterval": 600,
        "public": True, "target": "us", "user": "daytona",
        "volumes": [{"volumeId": vol["id"], "mountPath": "/home/daytona/vol",
                     "subpath": "users/alice"}],
    }
    dto = q.ok("POST", "/sandbox", json=body)
    for key in ("name", "labels", "env", "cpu", "memory", "disk", "autoStopInterval",
                "autoArchiveInterval", "autoDeleteInterval", "public", "target", "user"):
        assert dto.get(key) == body[key], f"{key}: sent {body[key]!r}, got {dto.get(key)!r}"
    assert len(dto["volumes"]) == 1
    got_vol = dto["volumes"][0]
    assert got_vol["volumeId"] == vol["id"]
    assert got_vol["mountPath"] == "/home/daytona/vol"
    assert got_vol["subpath"] == "users/alice"
    assert dto["labels"]["code-toolbox-language"] == "typescript"
    # The same record comes back from GET once it is started.
    got = wait_sandbox(q, dto["id"], "started")
    for key in ("name", "labels", "env", "cpu", "memory", "disk", "public", "target", "user"):
        assert got[key] == body[key], key


def test_create_returns_a_full_dto(quaverd):
    dto = quaverd.ok("POST", "/sandbox",
                     json={"env": {}, "labels": {"code-toolbox-language": "python"}})
    for key in ("id", "organizationId", "name", "user", "env", "labels", "public", "target",
                "toolboxProxyUrl", "cpu", "gpu", "memory", "disk", "state", "createdAt",
                "updatedAt"):
        assert key in dto, f"{key} missing from {dto}"
    assert dto["state"] in SANDBOX_STATES
    assert dto["organizationId"] == (quaverd.state_dir / "organization").read_text().strip()


def test_create_applies_daytona_defaults(quaverd):
    dto = create_sandbox(quaverd)
    assert dto["autoStopInterval"] == 15
    assert dto["autoArchiveInterval"] == 7 * 24 * 60
    assert dto["autoDeleteInterval"] < 0  # off


def test_created_sandbox_starts_and_owns_a_filesystem(quaverd):
    dto = create_sandbox(quaverd)
    assert dto["state"] == "started"
    root = quaverd.state_dir / "sandboxes" / dto["id"] / "root"
    assert (root / "home" / "daytona").is_dir()
    assert (root / "tmp").is_dir()
    assert (quaverd.state_dir / "sandboxes" / dto["id"] / "meta.json").is_file()


def test_get_by_id_and_by_name(quaverd):
    name = unique("byname")
    dto = create_sandbox(quaverd, name=name)
    by_id = get_sandbox(quaverd, dto["id"])
    by_name = get_sandbox(quaverd, name)
    assert by_id["id"] == by_name["id"] == dto["id"]
    assert by_id["name"] == by_name["name"] == name


def test_full_dto_has_env_but_list_items_do_not(quaverd):
    dto = create_sandbox(quaverd, name=unique("dto"), env={"A": "1"})
    full = get_sandbox(quaverd, dto["id"])
    assert full["env"] == {"A": "1"}
    assert "volumes" in full
    items = quaverd.ok("GET", "/sandbox?name=" + quote(dto["name"]))["items"]
    assert [i["id"] for i in items] == [dto["id"]]
    item = items[0]
    # The SDK tells a full DTO from a list item by the presence of env.
    for key in ("env", "volumes", "buildInfo"):
        assert key not in item, f"list item carries {key}: {item}"
    for key in ("id", "name", "state", "labels", "toolboxProxyUrl"):
        assert key in item, key


def test_many_clients_create_at_once(quaverd):
    results = [None] * 16
    errors = []

    def one(i):
        try:
            results[i] = quaverd.request("POST", "/sandbox", json={
                "name": f"conc-{i}", "env": {}, "labels": {"code-toolbox-language": "python"}})
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(r.status == 200 for r in results), [(r.status, r.data) for r in results]
    ids = {r.data["id"] for r in results}
    assert len(ids) == len(results)
    for r in results:
        wait_sandbox(quaverd, r.data["id"], "started")


# ---- list -------------------------------------------------------------------


@pytest.mark.slow
def test_list_pages_over_250_sandboxes(quaverd):
    created = []
    lock = threading.Lock()
    errors = []

    def worker(start):
        try:
            for i in range(start, 250, 4):
                dto = quaverd.ok("POST", "/sandbox", json={
                    "name": f"page-{i:03d}", "env": {},
                    "labels": {"code-toolbox-language": "python"}})
                with lock:
                    created.append(dto["id"])
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(created) == 250

    pages = []
    cursor = None
    while True:
        qs = "limit=100" + ("&cursor=" + quote(cursor) if cursor else "")
        page = quaverd.ok("GET", "/sandbox?" + qs)
        pages.append(page["items"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "paging does not end"
    assert [len(p) for p in pages[:2]] == [100, 100], [len(p) for p in pages]
    listed = [item["id"] for p in pages for item in p]
    assert len(listed) == len(set(listed)), "an id was listed twice"
    assert sorted(listed) == sorted(created)


def test_list_of_nothing_is_empty_with_a_null_cursor(quaverd):
    page = quaverd.ok("GET", "/sandbox")
    assert page["items"] == [] and page["nextCursor"] is None


def test_list_filters_by_name_prefix_case_insensitively(quaverd):
    a = create_sandbox(quaverd, name="alpha-one")
    b = create_sandbox(quaverd, name="alpha-two")
    create_sandbox(quaverd, name="beta-one")
    got = {i["id"] for i in list_all_sandboxes(quaverd, "name=alpha")}
    assert got == {a["id"], b["id"]}
    got = {i["id"] for i in list_all_sandboxes(quaverd, "name=ALPHA-T")}
    assert got == {b["id"]}


def test_list_filters_by_labels(quaverd):
    dev = create_sandbox(quaverd, labels={"code-toolbox-language": "python", "env": "dev",
                                          "team": "fs"})
    create_sandbox(quaverd, labels={"code-toolbox-language": "python", "env": "prod",
                                    "team": "fs"})
    create_sandbox(quaverd, labels={"code-toolbox-language": "python"})

    def ids(labels):
        q = "labels=" + quote(json.dumps(labels))
        return {i["id"] for i in list_all_sandboxes(quaverd, q)}

    assert ids({"env": "dev"}) == {dev["id"]}
    assert ids({"env": "dev", "team": "fs"}) == {dev["id"]}
    assert len(ids({"team": "fs"})) == 2
    assert ids({"env": "dev", "team": "other"}) == set()


def test_list_filters_by_states(quaverd):
    running = create_sandbox(quaverd)
    stopped = create_sandbox(quaverd)
    quaverd.ok("POST", f"/sandbox/{stopped['id']}/stop")
    wait_sandbox(quaverd, stopped["id"], "stopped")
    got = {i["id"] for i in list_all_sandboxes(quaverd, "states=stopped")}
    assert got == {stopped["id"]}
    got = {i["id"] for i in list_all_sandboxes(quaverd, "states=started")}
    assert got == {running["id"]}
    got = {i["id"] for i in list_all_sandboxes(quaverd, "states=started&states=stopped")}
    assert got == {running["id"], stopped["id"]}


def test_list_is_newest_first_and_asc_on_request(quaverd):
    ids = [create_sandbox(quaverd, name=f"order-{i}")["id"] for i in range(5)]
    assert [i["id"] for i in list_all_sandboxes(quaverd, limit=2)] == ids[::-1]
    assert [i["id"] for i in list_all_sandboxes(quaverd, "order=asc", limit=2)] == ids


def test_list_paging_survives_deletes_between_pages(quaverd):
    ids = [create_sandbox(quaverd, name=f"keyset-{i}")["id"] for i in range(6)]
    first = quaverd.ok("GET", "/sandbox?limit=3")
    assert [i["id"] for i in first["items"]] == ids[:2:-1]
    # Delete one already seen and one not yet seen.
    for gone in (ids[4], ids[1]):
        quaverd.ok("DELETE", f"/sandbox/{gone}")
        wait_for("the delete", lambda: quaverd.request("GET", f"/sandbox/{gone}").status == 404)
    rest = quaverd.ok("GET", "/sandbox?limit=3&cursor=" + quote(first["nextCursor"]))
    assert [i["id"] for i in rest["items"]] == [ids[2], ids[0]]
    assert rest["nextCursor"] is None


def test_list_filters_by_id_prefix_public_snapshot_and_resources(quaverd):
    q = quaverd
    small = create_sandbox(q, cpu=1, memory=1, disk=3)
    big = create_sandbox(q, cpu=4, memory=8, disk=20, public=True)
    q.ok("POST", f"/sandbox/{small['id']}/snapshot", json={"name": "filt-snap"})
    wait_for("snapshot", lambda: q.ok("GET", "/snapshots/filt-snap")["state"] == "active")
    wait_sandbox(q, small["id"], "started")
    child = create_sandbox(q, snapshot="filt-snap")

    def ids(query):
        return {i["id"] for i in list_all_sandboxes(q, query)}

    assert ids("id=" + big["id"][:8].upper()) == {big["id"]}
    assert ids("isPublic=true") == {big["id"]}
    assert ids("snapshots=filt-snap") == {child["id"]}
    assert ids("minCpu=2") == {big["id"]}
    assert ids("maxMemoryGiB=4") == {small["id"], child["id"]}
    assert ids("minDiskGiB=10") == {big["id"]}


def test_other_create_fields_are_type_checked_and_echoed(quaverd):
    extra = {"networkBlockAll": True, "networkAllowList": "10.0.0.0/8",
             "domainAllowList": "example.com", "autoPauseInterval": 0, "ttlMinutes": 30,
             "spot": False, "gpuType": ["none"]}
    dto = create_sandbox(quaverd, **extra)
    full = get_sandbox(quaverd, dto["id"])
    for key in ("networkBlockAll", "networkAllowList", "domainAllowList"):
        assert full[key] == extra[key], key
    assert_daytona_error(quaverd.request("POST", "/sandbox", json={
        "env": {}, "labels": {}, "networkBlockAll": "yes"}), 400)


def test_create_with_null_fields_counts_them_absent(quaverd):
    dto = quaverd.ok("POST", "/sandbox", json={"name": None, "env": {}, "labels": None,
                                               "snapshot": None, "volumes": None})
    assert dto["name"] == dto["id"]
    assert dto["labels"] == {}


def test_sandbox_without_name_is_named_after_its_id(quaverd):
    dto = quaverd.ok("POST", "/sandbox", json={"env": {}, "labels": {}})
    assert dto["name"] == dto["id"]
    assert get_sandbox(quaverd, dto["id"])["name"] == dto["id"]


def test_sandbox_survives_restart_with_every_field(quaverd):
    q = quaverd
    dto = create_sandbox(q, name=unique("persist"), env={"A": "1"},
                         labels={"code-toolbox-language": "python", "x": "y"},
                         cpu=2, memory=3, disk=4, autoStopInterval=7, public=True)
    plant(q, dto["id"])
    q.restart()
    got = get_sandbox(q, dto["id"])
    for key in ("name", "env", "labels", "cpu", "memory", "disk", "autoStopInterval",
                "public", "state", "createdAt", "organizationId"):
        assert got[key] == dto[key], key
    assert (home(q, dto["id"]) / "planted.txt").is_file()


# ---- the state machine --------------------------------------------------------


def test_stop_keeps_the_filesystem(quaverd):
    dto = create_sandbox(quaverd)
    planted = plant(quaverd, dto["id"])
    quaverd.ok("POST", f"/sandbox/{dto['id']}/stop")
    assert wait_sandbox(quaverd, dto["id"], "stopped")["state"] == "stopped"
    assert planted.read_text() == "kept across the state machine\n"


def test_start_stop_archive_start_keeps_files(make_quaverd):
    q = make_quaverd("--transition-delay", "300")
    dto = create_sandbox(q, name=unique("cycle"))
    sid = dto["id"]
    plant(q, sid)
    (home(q, sid) / "sub").mkdir()
    plant(q, sid, "sub/deeper.bin", "x" * 100000)
    sandbox_dir = q.state_dir / "sandboxes" / sid

    q.ok("POST", f"/sandbox/{sid}/stop")
    wait_sandbox(q, sid, "stopped")
    q.ok("POST", f"/sandbox/{sid}/start")
    wait_sandbox(q, sid, "started")
    q.ok("POST", f"/sandbox/{sid}/stop")
    wait_sandbox(q, sid, "stopped")

    resp = q.ok("POST", f"/sandbox/{sid}/archive")
    assert resp["state"] in ("archiving", "archived"), resp["state"]
    wait_sandbox(q, sid, "archived")
    # Archive packs the tree into one file and frees the tree.
    assert (sandbox_dir / "archive.tar").is_file()
    assert not (sandbox_dir / "root").exists()

    seen = [q.ok("POST", f"/sandbox/{sid}/start")["state"]]
    while seen[-1] != "started":
        time.sleep(0.05)
        seen.append(get_sandbox(q, sid)["state"])
        assert len(seen) < 400, seen
    assert "restoring" in seen, f"states seen while restoring: {seen}"
    assert set(seen) <= {"restoring", "starting", "started"}, seen
    assert (home(q, sid) / "planted.txt").read_text() == "kept across the state machine\n"
    assert (home(q, sid) / "sub" / "deeper.bin").read_text() == "x" * 100000
    # The archive goes once the record saying "started" is on disk, just
    # after the state is published: moments later, not necessarily before.
    deadline = time.monotonic() + 5
    while (sandbox_dir / "archive.tar").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (sandbox_dir / "archive.tar").exists()


def test_start_of_started_sandbox_is_harmless(quaverd):
    dto = create_sandbox(quaverd)
    status, body = quaverd.request("POST", f"/sandbox/{dto['id']}/start")
    # Daytona answers 200 (already started); anything else must be a clean 4xx.
    if status == 200:
        assert body["state"] == "started"
    else:
        assert_daytona_error((status, body), 400)
    assert get_sandbox(quaverd, dto["id"])["state"] == "started"


def test_delete_removes_sandbox_and_its_files(quaverd):
    dto = create_sandbox(quaverd, name=unique("del"))
    sid = dto["id"]
    status, body = quaverd.request("DELETE", f"/sandbox/{sid}")
    assert status == 200, (status, body)
    if isinstance(body, dict) and body:
        assert body.get("state") in ("destroying", "destroyed"), body
    wait_for("the sandbox to disappear",
             lambda: quaverd.request("GET", f"/sandbox/{sid}").status == 404)
    assert_daytona_error(quaverd.request("GET", f"/sandbox/{sid}"), 404)
    assert_daytona_error(quaverd.request("GET", f"/sandbox/{dto['name']}"), 404)
    assert sid not in {i["id"] for i in list_all_sandboxes(quaverd)}
    wait_for("the sandbox directory to go",
             lambda: not (quaverd.state_dir / "sandboxes" / sid).exists())


def test_delete_of_archived_sandbox(quaverd):
    sid = create_sandbox(quaverd)["id"]
    quaverd.ok("POST", f"/sandbox/{sid}/stop")
    wait_sandbox(quaverd, sid, "stopped")
    quaverd.ok("POST", f"/sandbox/{sid}/archive")
    wait_sandbox(quaverd, sid, "archived")
    quaverd.ok("DELETE", f"/sandbox/{sid}")
    wait_for("the sandbox to disappear",
             lambda: quaverd.request("GET", f"/sandbox/{sid}").status == 404)
    wait_for("the sandbox directory to go",
             lambda: not (quaverd.state_dir / "sandboxes" / sid).exists())


def test_name_is_free_again_after_delete(quaverd):
    name = unique("reuse")
    first = create_sandbox(quaverd, name=name)
    quaverd.ok("DELETE", f"/sandbox/{first['id']}")
    wait_for("the sandbox to disappear",
             lambda: quaverd.request("GET", f"/sandbox/{first['id']}").status == 404)
    second = create_sandbox(quaverd, name=name)
    assert second["id"] != first["id"]


# ---- labels, intervals, URLs ---------------------------------------------------


def test_put_labels_replaces_them(quaverd):
    dto = create_sandbox(quaverd, labels={"code-toolbox-language": "python", "old": "1"})
    new = {"code-toolbox-language": "javascript", "fresh": "yes"}
    got = quaverd.ok("PUT", f"/sandbox/{dto['id']}/labels", json={"labels": new})
    assert got == {"labels": new}
    assert get_sandbox(quaverd, dto["id"])["labels"] == new


def test_put_labels_by_name(quaverd):
    name = unique("lbl")
    create_sandbox(quaverd, name=name)
    quaverd.ok("PUT", f"/sandbox/{name}/labels", json={"labels": {"k": "v"}})
    assert get_sandbox(quaverd, name)["labels"] == {"k": "v"}


@pytest.mark.parametrize("kind,field,minutes", [
    ("autostop", "autoStopInterval", 45),
    ("autostop", "autoStopInterval", 0),
    ("autoarchive", "autoArchiveInterval", 90),
    ("autodelete", "autoDeleteInterval", 240),
    ("autodelete", "autoDeleteInterval", -1),
])
def test_interval_endpoints_set_the_interval(shared_quaverd, kind, field, minutes):
    q = shared_quaverd
    dto = create_sandbox(q)
    got = q.ok("POST", f"/sandbox/{dto['id']}/{kind}/{minutes}")
    assert got[field] == minutes
    assert get_sandbox(q, dto["id"])[field] == minutes


def test_autoarchive_zero_means_the_maximum(shared_quaverd):
    dto = create_sandbox(shared_quaverd)
    got = shared_quaverd.ok("POST", f"/sandbox/{dto['id']}/autoarchive/0")
    assert got["autoArchiveInterval"] > 0


def test_toolbox_proxy_url_is_not_under_the_api(shared_quaverd):
    q = shared_quaverd
    dto = create_sandbox(q)
    url = q.ok("GET", f"/sandbox/{dto['id']}/toolbox-proxy-url")["url"]
    assert url == dto["toolboxProxyUrl"]
    api = urllib.parse.urlsplit(q.url)
    tb = urllib.parse.urlsplit(url)
    assert tb.scheme == "http" and tb.hostname == "127.0.0.1"
    # Clients must honour toolboxProxyUrl as with Daytona cloud: it is not the API base.
    under_api = (tb.path.rstrip("/") + "/").startswith(api.path.rstrip("/") + "/")
    assert tb.port != api.port or not under_api, (url, q.url)


def test_preview_url_names_sandbox_and_port(shared_quaverd):
    q = shared_quaverd
    dto = create_sandbox(q)
    a = q.ok("GET", f"/sandbox/{dto['id']}/ports/3000/preview-url")
    b = q.ok("GET", f"/sandbox/{dto['name']}/ports/8080/preview-url")
    assert a["sandboxId"] == b["sandboxId"] == dto["id"]
    for got in (a, b):
        assert isinstance(got["url"], str) and got["url"].startswith("http")
        assert isinstance(got["token"], str)
    assert a["url"] != b["url"]
    assert "3000" in a["url"] and "8080" in b["url"]
    # The preview token is not the API token.
    assert q.token not in (a["token"], b["token"])


def test_toolbox_answers_home_and_work_dir_for_a_started_sandbox(shared_quaverd):
    q = shared_quaverd
    dto = create_sandbox(q)
    base = dto["toolboxProxyUrl"].rstrip("/") + "/" + dto["id"]
    for leaf in ("user-home-dir", "work-dir"):
        status, body = q.request_url("GET", f"{base}/{leaf}")
        assert (status, body) == (200, {"dir": "/home/daytona"}), (leaf, status, body)
    assert q.request_url("GET", f"{base}/version").status == 200


def test_toolbox_of_stopped_sandbox_is_409_and_unknown_404(shared_quaverd):
    q = shared_quaverd
    dto = create_sandbox(q)
    q.ok("POST", f"/sandbox/{dto['id']}/stop")
    wait_sandbox(q, dto["id"], "stopped")
    tb = dto["toolboxProxyUrl"].rstrip("/")
    assert_daytona_error(q.request_url("GET", f"{tb}/{dto['id']}/user-home-dir"), 409)
    assert_daytona_error(q.request_url("GET", f"{tb}/00000000-0000-4000-8000-000000000000"
                                              f"/user-home-dir"), 404)


# ---- auto-stop, auto-archive, auto-delete with the clock scale -----------------


def test_idle_sandbox_is_stopped_by_autostop(make_quaverd):
    q = make_quaverd("--clock-scale", "60")  # one minute lasts one second
    dto = create_sandbox(q, autoStopInterval=1)
    sid = dto["id"]
    plant(q, sid)
    time.sleep(3.0)  # idle: no call at all on this sandbox
    state = get_sandbox(q, sid)["state"]
    assert state in ("stopping", "stopped"), state
    wait_sandbox(q, sid, "stopped")
    assert (home(q, sid) / "planted.txt").is_file()


def test_touched_sandbox_keeps_running(make_quaverd):
    q = make_quaverd("--clock-scale", "60")
    touched = create_sandbox(q, autoStopInterval=1)["id"]
    idle = create_sandbox(q, autoStopInterval=1)["id"]
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        assert get_sandbox(q, touched)["state"] == "started"
        time.sleep(0.2)
    assert get_sandbox(q, idle)["state"] in ("stopping", "stopped")


def test_last_activity_and_toolbox_calls_keep_it_running(make_quaverd):
    q = make_quaverd("--clock-scale", "60")
    by_ping = create_sandbox(q, autoStopInterval=1)
    by_toolbox = create_sandbox(q, autoStopInterval=1)
    tb = by_toolbox["toolboxProxyUrl"].rstrip("/") + "/" + by_toolbox["id"]
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        status, _ = q.request("POST", f"/sandbox/{by_ping['id']}/last-activity")
        assert status == 201
        assert q.request_url("GET", tb + "/work-dir").status == 200
        time.sleep(0.2)
    # Listing is not a call naming either sandbox; they are still started.
    states = {i["id"]: i["state"] for i in list_all_sandboxes(q)}
    assert states[by_ping["id"]] == "started"
    assert states[by_toolbox["id"]] == "started"


def test_autostop_zero_disables_it(make_quaverd):
    q = make_quaverd("--clock-scale", "600")
    sid = create_sandbox(q, autoStopInterval=0)["id"]
    time.sleep(2.0)
    assert get_sandbox(q, sid)["state"] == "started"


def test_stopped_sandbox_is_archived_by_autoarchive(make_quaverd):
    q = make_quaverd("--clock-scale", "60")
    sid = create_sandbox(q, autoStopInterval=0, autoArchiveInterval=1)["id"]
    plant(q, sid)
    q.ok("POST", f"/sandbox/{sid}/stop")
    wait_sandbox(q, sid, "stopped")
    time.sleep(3.0)
    wait_sandbox(q, sid, "archived", timeout=10)
    q.ok("POST", f"/sandbox/{sid}/start")
    wait_sandbox(q, sid, "started")
    assert (home(q, sid) / "planted.txt").is_file()


def test_stopped_sandbox_is_deleted_by_autodelete(make_quaverd):
    q = make_quaverd("--clock-scale", "60")
    sid = create_sandbox(q, autoStopInterval=0, autoDeleteInterval=1)["id"]
    q.ok("POST", f"/sandbox/{sid}/stop")
    wait_sandbox(q, sid, "stopped")
    time.sleep(3.0)
    wait_for("auto-delete", lambda: q.request("GET", f"/sandbox/{sid}").status == 404,
             timeout=10)


def test_autodelete_zero_deletes_as_soon_as_stopped(make_quaverd):
    q = make_quaverd("--clock-scale", "60")
    sid = create_sandbox(q, autoStopInterval=0, autoDeleteInterval=0)["id"]
    q.ok("POST", f"/sandbox/{sid}/stop")
    wait_for("auto-delete", lambda: q.request("GET", f"/sandbox/{sid}").status == 404,
             timeout=10)


# ---- recover ---------------------------------------------------------------------


def put_in_error(q):
    """A sandbox whose filesystem vanished while quaverd was down comes back
    in error, recoverable (doc/quaverd.md "Crash recovery")."""
    sid = create_sandbox(q, name=unique("broken"))["id"]
    q.stop()
    shutil.rmtree(q.state_dir / "sandboxes" / sid / "root")
    q.start()
    dto = get_sandbox(q, sid)
    assert dto["state"] == "error", dto
    assert dto["recoverable"] is True
    assert dto["errorReason"]
    return sid


def test_recover_from_error(quaverd):
    q = quaverd
    sid = put_in_error(q)
    resp = q.ok("POST", f"/sandbox/{sid}/recover")
    assert resp["state"] in ("starting", "started", "restoring"), resp["state"]
    dto = wait_sandbox(q, sid, "started")
    assert not dto.get("errorReason")
    assert home(q, sid).is_dir()
    assert get_sandbox(q, sid)["state"] == "started"


def test_recover_with_skip_start_leaves_it_stopped(quaverd):
    q = quaverd
    sid = put_in_error(q)
    q.ok("POST", f"/sandbox/{sid}/recover?skipStart=true")
    wait_sandbox(q, sid, "stopped")


def test_errored_sandbox_refuses_start_until_recovered(quaverd):
    q = quaverd
    sid = put_in_error(q)
    body = assert_daytona_error(q.request("POST", f"/sandbox/{sid}/start"), 400)
    assert "error" in body["message"]
    assert get_sandbox(q, sid)["state"] == "error"


def test_errored_sandbox_is_listed_with_states_filter(quaverd):
    q = quaverd
    sid = put_in_error(q)
    assert [i["id"] for i in list_all_sandboxes(q, "states=error")] == [sid]
    assert [i["id"] for i in list_all_sandboxes(q, "isRecoverable=true")] == [sid]


def test_errored_sandbox_can_be_deleted(quaverd):
    q = quaverd
    sid = put_in_error(q)
    q.ok("DELETE", f"/sandbox/{sid}")
    wait_for("the sandbox to disappear",
             lambda: q.request("GET", f"/sandbox/{sid}").status == 404)
