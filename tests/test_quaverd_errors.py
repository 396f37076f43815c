"""quaverd's answers to invalid transitions and bad input: each gets a 4xx
with a Daytona-shaped body and a message, quaverd stays up, and nothing
changes in the state dir (doc/quaverd.md "Errors" and "Object names",
../shared/daytona-api.md sections 1.3 and 2.2, issue 2)."""

import contextlib
import http.client
import json
import os

import pytest

from helpers.daytona import (assert_daytona_error, create_sandbox, create_volume, short,
                             snapshot_sandbox, unique, wait_for, wait_sandbox, wait_volume)
from helpers.quaverd import quote, state_tree, tree_diff

MAX_BODY = 65536


@pytest.fixture(scope="module")
def world(make_module_quaverd):
    """One quaverd with a small body limit and a slow volume creation, and a
    few objects to aim bad requests at."""
    q = make_module_quaverd("--max-body", str(MAX_BODY), "--transition-delay", "1500")
    w = {"q": q}
    w["started"] = create_sandbox(q, name="err-started")
    w["stopped"] = create_sandbox(q, name="err-stopped")
    q.ok("POST", f"/sandbox/{w['stopped']['id']}/stop")
    wait_sandbox(q, w["stopped"]["id"], "stopped")
    w["archived"] = create_sandbox(q, name="err-archived")
    q.ok("POST", f"/sandbox/{w['archived']['id']}/stop")
    wait_sandbox(q, w["archived"]["id"], "stopped")
    q.ok("POST", f"/sandbox/{w['archived']['id']}/archive")
    wait_sandbox(q, w["archived"]["id"], "archived")
    w["volume"] = create_volume(q, name="err-vol")
    w["snapshot"], _ = snapshot_sandbox(q, "err-stopped", "err-snap")
    return w


@contextlib.contextmanager
def unchanged(q):
    """Asserts that quaverd is alive and the state dir is as it was."""
    before = state_tree(q.state_dir)
    yield
    assert q.running, "quaverd died"
    assert q.request("GET", "/sandbox").status == 200, "quaverd stopped answering"
    after = state_tree(q.state_dir)
    assert before == after, "the state dir changed:\n" + tree_diff(before, after)


def delete_and_wait(q, sid):
    """Deletes a sandbox and waits until its directory is gone, so no later
    test sees the state dir change under it."""
    q.ok("DELETE", f"/sandbox/{sid}")
    wait_for("the sandbox directory to go",
             lambda: not (q.state_dir / "sandboxes" / sid).exists())


def expect_error(q, method, path, status, json_body=None, body=None, headers=None):
    with unchanged(q):
        resp = q.request(method, path, json=json_body, body=body, headers=headers)
        return assert_daytona_error(resp, status)


def expect_4xx(q, method, path, json_body=None, body=None, allowed=(400, 404)):
    with unchanged(q):
        resp = q.request(method, path, json=json_body, body=body)
        assert resp.status in allowed, \
            f"{method} {path}: expected one of {allowed}, got {resp.status} {short(resp.data)}"
        return assert_daytona_error(resp, resp.status)


# ---- documented error cases ------------------------------------------------------


def test_archive_of_started_sandbox_is_400_naming_the_state(world):
    body = expect_error(world["q"], "POST", "/sandbox/err-started/archive", 400)
    assert "started" in body["message"]


def test_recover_of_sandbox_not_in_error_is_400(world):
    body = expect_error(world["q"], "POST", "/sandbox/err-started/recover", 400)
    assert "started" in body["message"] or "error" in body["message"]


def test_snapshot_of_archived_sandbox_is_400(world):
    expect_error(world["q"], "POST", "/sandbox/err-archived/snapshot", 400,
                 json_body={"name": unique("snap")})


def test_duplicate_sandbox_name_is_409(world):
    expect_error(world["q"], "POST", "/sandbox", 409,
                 json_body={"name": "err-started", "env": {}, "labels": {}})


def test_duplicate_volume_name_is_409(world):
    expect_error(world["q"], "POST", "/volumes", 409, json_body={"name": "err-vol"})


def test_duplicate_snapshot_name_is_409(world):
    expect_error(world["q"], "POST", "/sandbox/err-started/snapshot", 409,
                 json_body={"name": "err-snap"})


def test_volume_not_ready_is_400(world):
    q = world["q"]
    vol = q.ok("POST", "/volumes", json={"name": unique("slow")})
    assert vol["state"] == "pending_create"
    body = expect_error(q, "POST", "/sandbox", 400, json_body={
        "env": {}, "labels": {},
        "volumes": [{"volumeId": vol["id"], "mountPath": "/home/daytona/v"}]})
    assert "ready" in body["message"]
    # Let it become ready now, so no later test sees it change on disk.
    wait_volume(q, vol["id"], "ready")


def test_resources_with_snapshot_are_400(world):
    for resources in ({"cpu": 2}, {"memory": 4}, {"disk": 10}):
        body = expect_error(world["q"], "POST", "/sandbox", 400, json_body={
            "snapshot": "err-snap", "env": {}, "labels": {}, **resources})
        assert "resources" in body["message"].lower()


def test_stop_of_stopped_sandbox_is_400_naming_the_state(world):
    body = expect_error(world["q"], "POST", "/sandbox/err-stopped/stop", 400)
    assert "stopped" in body["message"]


def test_archive_of_archived_sandbox_is_400(world):
    body = expect_error(world["q"], "POST", "/sandbox/err-archived/archive", 400)
    assert "archived" in body["message"]


def test_archive_of_ephemeral_sandbox_is_400(quaverd):
    q = quaverd
    sid = create_sandbox(q, autoDeleteInterval=0, autoStopInterval=0)["id"]
    # An ephemeral sandbox vanishes when stopped, so it is never "stopped":
    # the refusal comes first (doc/quaverd.md "Refusals").
    body = assert_daytona_error(q.request("POST", f"/sandbox/{sid}/archive"), 400)
    assert body["message"]


@pytest.mark.parametrize("body,word", [
    ({"buildInfo": {"dockerfileContent": "FROM ubuntu\n"}}, "build"),
    ({"secrets": [{"A": "s"}]}, "secret"),
    ({"linkedSandbox": "err-started"}, "linked"),
])
def test_unsupported_create_features_are_400(world, body, word):
    resp = expect_error(world["q"], "POST", "/sandbox", 400,
                        json_body={"env": {}, "labels": {}, **body})
    assert word in resp["message"].lower()


def test_snapshot_with_memory_is_400(world):
    expect_error(world["q"], "POST", "/sandbox/err-started/snapshot", 400,
                 json_body={"name": unique("mem"), "includeMemory": True})


def test_snapshot_from_image_is_400(world):
    expect_error(world["q"], "POST", "/snapshots", 400,
                 json_body={"name": unique("img"), "imageName": "ubuntu:22.04"})


def test_activate_snapshot_is_400(world):
    expect_error(world["q"], "POST", f"/snapshots/{world['snapshot']['id']}/activate", 400)


def test_delete_of_pending_snapshot_is_400(make_quaverd):
    q = make_quaverd("--transition-delay", "1500")
    sid = create_sandbox(q)["id"]
    q.ok("POST", f"/sandbox/{sid}/snapshot", json={"name": "pending-one"})
    assert q.ok("GET", "/snapshots/pending-one")["state"] == "pending"
    assert_daytona_error(q.request("DELETE", "/snapshots/pending-one"), 400)
    wait_for("the snapshot", lambda: q.ok("GET", "/snapshots/pending-one")["state"] == "active")


@pytest.mark.parametrize("body", [
    {"labels": {f"k{i}": "v" for i in range(101)}},
    {"labels": {"": "v"}},
    {"labels": {"k" * 257: "v"}},
    {"labels": {"k": "line\nbreak"}},
    {"env": {f"K{i}": "v" for i in range(101)}},
    {"env": {"A=B": "v"}},
    {"env": {"WITH SPACE": "v"}},
    {"env": {"": "v"}},
    {"autoStopInterval": -1},
    {"autoArchiveInterval": -5},
    {"autoStopInterval": 1.5},
    {"cpu": -1},
    {"volumes": [{"volumeId": "err-vol", "mountPath": "relative/path"}]},
    {"volumes": [{"volumeId": "err-vol", "mountPath": "/"}]},
    {"volumes": [{"volumeId": "err-vol", "mountPath": "/home/../etc"}]},
    {"volumes": [{"volumeId": "err-vol", "mountPath": "/m", "subpath": "../x"}]},
    {"volumes": [{"volumeId": "err-vol", "mountPath": "/m", "subpath": "/abs"}]},
    {"volumes": [{"volumeId": "err-vol", "mountPath": "/m", "subpath": "a//b"}]},
    {"volumes": [{"volumeId": "err-vol", "mountPath": "/m", "subpath": "a/./b"}]},
    {"volumes": [{"volumeId": "err-vol", "mountPath": "/m", "subpath": "x" * 1025}]},
    {"volumes": [{"volumeId": "err-vol"}]},
    {"name": "ok", "user": "x" * 300},
], ids=lambda b: json.dumps(b)[:48])
def test_invalid_values_in_create_are_400(world, body):
    expect_error(world["q"], "POST", "/sandbox", 400,
                 json_body={"env": {}, "labels": {}, **body})


def test_unknown_snapshot_in_create_is_4xx(world):
    expect_4xx(world["q"], "POST", "/sandbox",
               json_body={"snapshot": "no-such-snapshot", "env": {}, "labels": {}})


def test_unknown_volume_in_create_is_4xx(world):
    expect_4xx(world["q"], "POST", "/sandbox", json_body={
        "env": {}, "labels": {},
        "volumes": [{"volumeId": "no-such-volume", "mountPath": "/home/daytona/v"}]})


UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize("method,path,body", [
    ("GET", f"/sandbox/{UNKNOWN}", None),
    ("GET", "/sandbox/no-such-name", None),
    ("POST", f"/sandbox/{UNKNOWN}/start", None),
    ("POST", f"/sandbox/{UNKNOWN}/stop", None),
    ("POST", f"/sandbox/{UNKNOWN}/archive", None),
    ("POST", f"/sandbox/{UNKNOWN}/recover", None),
    ("DELETE", f"/sandbox/{UNKNOWN}", None),
    ("PUT", f"/sandbox/{UNKNOWN}/labels", {"labels": {"a": "b"}}),
    ("POST", f"/sandbox/{UNKNOWN}/autostop/5", None),
    ("POST", f"/sandbox/{UNKNOWN}/autoarchive/5", None),
    ("POST", f"/sandbox/{UNKNOWN}/autodelete/5", None),
    ("POST", f"/sandbox/{UNKNOWN}/snapshot", {"name": "never-made"}),
    ("GET", f"/sandbox/{UNKNOWN}/toolbox-proxy-url", None),
    ("GET", f"/sandbox/{UNKNOWN}/ports/3000/preview-url", None),
    ("GET", f"/volumes/{UNKNOWN}", None),
    ("GET", "/volumes/by-name/no-such-volume", None),
    ("DELETE", f"/volumes/{UNKNOWN}", None),
    ("GET", f"/snapshots/{UNKNOWN}", None),
    ("GET", "/snapshots/no-such-snapshot", None),
    ("DELETE", f"/snapshots/{UNKNOWN}", None),
])
def test_unknown_id_is_404(world, method, path, body):
    expect_error(world["q"], method, path, 404, json_body=body)


def test_unknown_route_is_404(world):
    expect_error(world["q"], "GET", "/no-such-collection", 404)


# ---- bad input -----------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    b"{",
    b'{"name": "x",}',
    b"not json at all",
    b'{"env": {}, "labels": {}',
    b'{"env": {}} trailing',
    b"\xff\xfe\x00garbage",
    b'{"name": "\xff\xfe"}',
    b'{"labels":' + b"[" * 30000 + b"]" * 30000 + b"}",
], ids=lambda raw: repr(raw)[:30])
def test_malformed_json_is_400(world, raw):
    expect_error(world["q"], "POST", "/sandbox", 400, body=raw)


@pytest.mark.parametrize("body", [
    [],
    "a string",
    42,
    {"name": 5},
    {"name": ["x"]},
    {"labels": "x"},
    {"labels": ["x"]},
    {"labels": {"a": 1}},
    {"env": "A=1"},
    {"env": {"A": 1}},
    {"env": {"A": None}},
    {"cpu": "two"},
    {"memory": True},
    {"disk": {"size": 1}},
    {"public": "yes"},
    {"target": 1},
    {"user": []},
    {"snapshot": 3},
    {"autoStopInterval": "15"},
    {"autoArchiveInterval": [1]},
    {"autoDeleteInterval": "never"},
    {"volumes": {}},
    {"volumes": ["vol"]},
    {"volumes": [{"volumeId": 5, "mountPath": "/m"}]},
    {"volumes": [{"volumeId": "err-vol", "mountPath": 7}]},
    {"volumes": [{"volumeId": "err-vol", "mountPath": "/m", "subpath": False}]},
], ids=lambda b: json.dumps(b)[:40])
def test_wrong_types_in_create_are_400(world, body):
    if isinstance(body, dict):
        body = {"env": {}, "labels": {}, **body}
    expect_error(world["q"], "POST", "/sandbox", 400, json_body=body)


@pytest.mark.parametrize("body", [
    {"nosuchfield": 1},
    {"name": unique("unk"), "Labels": {}},
    {"imageName": "ubuntu"},
])
def test_unknown_fields_in_create_are_400(world, body):
    expect_error(world["q"], "POST", "/sandbox", 400,
                 json_body={"env": {}, "labels": {}, **body})


def test_unknown_field_in_volume_create_is_400(world):
    expect_error(world["q"], "POST", "/volumes", 400,
                 json_body={"name": unique("v"), "size": 10})


@pytest.mark.parametrize("body", [
    {"labels": "x"},
    {"labels": {"a": 1}},
    {"labels": {"a": "b"}, "extra": 1},
    {},
    [],
])
def test_bad_labels_body_is_400(world, body):
    expect_error(world["q"], "PUT", "/sandbox/err-started/labels", 400, json_body=body)


@pytest.mark.parametrize("body", [{}, {"name": 5}, {"name": "ok", "bogus": True}, "x"])
def test_bad_snapshot_body_is_400(world, body):
    expect_error(world["q"], "POST", "/sandbox/err-started/snapshot", 400, json_body=body)


@pytest.mark.parametrize("path", [
    "/sandbox/err-started/autostop/abc",
    "/sandbox/err-started/autostop/1.5",
    "/sandbox/err-started/autostop/-5",
    "/sandbox/err-started/autoarchive/-1",
    "/sandbox/err-started/autodelete/x",
    "/sandbox/err-started/autostop/99999999999999999999999",
])
def test_bad_interval_is_400(world, path):
    expect_error(world["q"], "POST", path, 400)


@pytest.mark.parametrize("port", ["abc", "-1", "0", "70000"])
def test_bad_preview_port_is_400(world, port):
    expect_error(world["q"], "GET", f"/sandbox/err-started/ports/{port}/preview-url", 400)


@pytest.mark.parametrize("query", [
    "labels=not-json",
    "labels=" + quote('["a"]'),
    "labels=" + quote('{"a": 1}'),
    "limit=0",
    "limit=201",
    "limit=abc",
    "cursor=" + quote("not a cursor"),
    "states=no_such_state",
])
def test_bad_list_query_is_400(world, query):
    expect_error(world["q"], "GET", "/sandbox?" + query, 400)


BAD_NAMES = [
    "a/b",
    "..",
    ".",
    "a\x00b",
    "with space",
    "x" * 300,
    "x" * 64,
    "",
    "-leading-dash",
    ".hidden",
    "tab\there",
    "new\nline",
    "caf\u00e9",
    "semi;colon",
]


def name_id(name):
    return repr(name)[:24]


@pytest.mark.parametrize("name", BAD_NAMES, ids=name_id)
def test_bad_sandbox_name_is_400(world, name):
    body = expect_error(world["q"], "POST", "/sandbox", 400,
                        json_body={"name": name, "env": {}, "labels": {}})
    assert "name" in body["message"].lower()


@pytest.mark.parametrize("name", BAD_NAMES, ids=name_id)
def test_bad_volume_name_is_400(world, name):
    expect_error(world["q"], "POST", "/volumes", 400, json_body={"name": name})


@pytest.mark.parametrize("name", BAD_NAMES, ids=name_id)
def test_bad_snapshot_name_is_400(world, name):
    expect_error(world["q"], "POST", "/sandbox/err-stopped/snapshot", 400,
                 json_body={"name": name})


def test_name_may_not_be_another_objects_id(world):
    q = world["q"]
    other = world["started"]["id"]
    expect_4xx(q, "POST", "/sandbox", json_body={"name": other, "env": {}, "labels": {}},
               allowed=(400, 409))


def test_longest_valid_name_is_accepted(world):
    q = world["q"]
    name = "n" + "x" * 62
    dto = create_sandbox(q, name=name)
    assert dto["name"] == name
    delete_and_wait(q, dto["id"])


OBJECT_PATHS = ("GET /sandbox/{}", "POST /sandbox/{}/stop", "DELETE /sandbox/{}",
                "GET /volumes/{}", "GET /volumes/by-name/{}", "DELETE /volumes/{}",
                "GET /snapshots/{}", "DELETE /snapshots/{}")


@pytest.mark.parametrize("ref", [
    "a%2Fb",
    "x" * 300,
    "%FF%FE",
    "with%20space",
    "%0A",
    "%0D",
    "a%3Bb",
])
def test_bad_id_in_path_is_4xx(world, ref):
    q = world["q"]
    for route in OBJECT_PATHS:
        method, path = route.format(ref).split(" ")
        expect_4xx(q, method, path)


@pytest.mark.parametrize("suffix", ["%0Ajunk", "%0D", "%0A", "%0D%0AX-Injected:%201"])
def test_control_characters_in_id_do_not_reach_another_object(quaverd, suffix):
    """DELETE /sandbox/NAME%0Ajunk names no sandbox: it must not delete NAME."""
    q = quaverd
    victim = create_sandbox(q, name="victim")
    expect_4xx(q, "DELETE", f"/sandbox/victim{suffix}")
    expect_4xx(q, "POST", f"/sandbox/victim{suffix}/stop")
    assert q.ok("GET", f"/sandbox/{victim['id']}")["state"] == "started"


@pytest.mark.parametrize("ref", ["..", "%2E%2E", "..%2F..%2Fetc", "%2E%2E%2F%2E%2E"])
def test_dot_segments_in_path_reach_no_object(world, ref):
    """libwebsockets resolves "." and ".." segments, encoded or not, before
    quaverd sees the path (doc/quaverd.md "HTTP limits"): what remains may
    name a collection (GET /volumes/.. is GET /volumes), but nothing changes
    and every error is Daytona-shaped."""
    q = world["q"]
    for route in OBJECT_PATHS:
        method, path = route.format(ref).split(" ")
        with unchanged(q):
            resp = q.request(method, path)
            if method != "GET" or resp.status != 200:
                assert 400 <= resp.status < 500, (method, path, resp)
                assert_daytona_error(resp, resp.status)


def test_nul_in_path_closes_the_connection_and_changes_nothing(world):
    """doc/quaverd.md "HTTP limits": libwebsockets closes the connection on
    %00 in a path."""
    q = world["q"]
    for route in OBJECT_PATHS:
        method, path = route.format("a%00b").split(" ")
        with unchanged(q):
            try:
                resp = q.request(method, path)
            except (http.client.RemoteDisconnected, ConnectionResetError):
                continue
            assert_daytona_error(resp, resp.status)
            assert 400 <= resp.status < 500


def send_chunked(q, method, path, chunks):
    conn = http.client.HTTPConnection(q.host, q.port, timeout=10)
    try:
        conn.putrequest(method, q.api_path + path)
        conn.putheader("Authorization", "Bearer " + q.token)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        try:
            for chunk in chunks:
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # a refusal may come before the body is read; read the answer
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_chunked_post_body_is_read_like_any_body(world):
    """node's http module streams bodies chunked (doc/quaverd.md, HTTP limits)."""
    q = world["q"]
    name = "chunked-" + os.urandom(4).hex()
    body = json.dumps({"name": name, "env": {}, "labels": {}}).encode()
    status, raw = send_chunked(q, "POST", "/sandbox", [body[:7], body[7:]])
    assert status == 200, raw
    created = json.loads(raw)
    assert created["name"] == name
    delete_and_wait(q, created["id"])


def test_chunked_body_on_delete_is_411(world):
    q = world["q"]
    with unchanged(q):
        status, raw = send_chunked(q, "DELETE", "/sandbox/nothing-here", [b"{}"])
        assert status == 411, (status, raw)
        assert_daytona_error((status, json.loads(raw)), 411)


def test_body_over_max_body_is_413(world):
    q = world["q"]
    big = {"env": {}, "labels": {"pad": "x" * (MAX_BODY + 1)}}
    expect_error(q, "POST", "/sandbox", 413, json_body=big)


def test_huge_body_over_max_body_is_413(world):
    q = world["q"]
    huge = b'{"labels": {"pad": "' + b"x" * (8 << 20) + b'"}}'
    expect_error(q, "POST", "/sandbox", 413, body=huge)


def test_body_just_under_max_body_is_accepted(world):
    q = world["q"]
    pad = "x" * (MAX_BODY - 200)
    dto = q.ok("POST", "/sandbox", json={"env": {}, "labels": {"pad": pad}})
    assert dto["labels"]["pad"] == pad
    delete_and_wait(q, dto["id"])


def test_default_body_limit_is_one_mebibyte(quaverd):
    big = {"env": {}, "labels": {"pad": "x" * (1048576 + 1)}}
    expect_error(quaverd, "POST", "/sandbox", 413, json_body=big)


def test_objects_are_untouched_after_all_that(world):
    """Runs last in this module: the objects the bad requests aimed at are as
    they were."""
    q = world["q"]
    assert q.ok("GET", "/sandbox/err-started")["state"] == "started"
    assert q.ok("GET", "/sandbox/err-stopped")["state"] == "stopped"
    assert q.ok("GET", "/sandbox/err-archived")["state"] == "archived"
    assert q.ok("GET", "/volumes/by-name/err-vol")["state"] == "ready"
    assert q.ok("GET", "/snapshots/err-snap")["state"] == "active"
