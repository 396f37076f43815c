"""quaverd killed with SIGKILL in the middle of create, stop, archive, restore
and snapshot, then restarted on the same state dir (issue 2 "Persistence",
doc/quaverd.md "Crash recovery").

After the restart every object must settle, within a bounded time, in a state
it may rest in (a final or retryable one), and files planted in a sandbox's
filesystem before the interrupted operation must still be there.
"""

import random
import threading
import time

import pytest

from helpers.daytona import (SANDBOX_STATES, SNAPSHOT_STATES, VOLUME_STATES, create_sandbox,
                             create_volume, get_sandbox, list_all_sandboxes, unique, wait_for,
                             wait_sandbox)

# Where an object may rest after a crash and restart. "error" counts only
# when it is retryable: a recoverable sandbox (recover works), a volume or a
# snapshot that can be deleted and made again.
SANDBOX_RESTING = {"started", "stopped", "archived", "error"}
VOLUME_RESTING = {"ready", "error"}
SNAPSHOT_RESTING = {"active", "error"}

SETTLE = 15.0
PLANTED = "planted before the crash\n"


def home(q, sid):
    return q.state_dir / "sandboxes" / sid / "root" / "home" / "daytona"


def plant(q, sid):
    (home(q, sid) / "planted.txt").write_text(PLANTED)
    (home(q, sid) / "big.bin").write_bytes(b"\x5a" * (2 << 20))


def everything(q):
    sandboxes = list_all_sandboxes(q)
    volumes = q.ok("GET", "/volumes")
    snapshots = q.ok("GET", "/snapshots?limit=100")["items"]
    return sandboxes, volumes, snapshots


def settle(q, timeout=SETTLE):
    """Waits until every listed object rests; returns (sandboxes, volumes,
    snapshots) as full DTOs."""
    last = {}

    def probe():
        sandboxes, volumes, snapshots = everything(q)
        full = [get_sandbox(q, s["id"]) for s in sandboxes]
        moving = [("sandbox", s["id"], s["state"]) for s in full
                  if s["state"] not in SANDBOX_RESTING]
        moving += [("volume", v["id"], v["state"]) for v in volumes
                   if v["state"] not in VOLUME_RESTING]
        moving += [("snapshot", s["id"], s["state"]) for s in snapshots
                   if s["state"] not in SNAPSHOT_RESTING]
        last["moving"] = moving
        return None if moving else (full, volumes, snapshots)

    try:
        return wait_for("every object to settle after restart", probe, timeout, 0.1)
    except AssertionError:
        raise AssertionError(f"still in transition {timeout} s after restart: "
                             f"{last.get('moving')}") from None


def check_consistent(q, sandboxes, volumes, snapshots):
    """Every listed object is a real, well-formed object."""
    for s in sandboxes:
        assert s["state"] in SANDBOX_STATES, s
        assert (q.state_dir / "sandboxes" / s["id"] / "meta.json").is_file(), s["id"]
        if s["state"] == "error":
            assert s.get("recoverable") is True, f"unrecoverable error after a crash: {s}"
        if s["state"] in ("started", "stopped"):
            assert (home(q, s["id"])).is_dir(), f"{s['id']} {s['state']} without root/"
        if s["state"] == "archived":
            assert (q.state_dir / "sandboxes" / s["id"] / "archive.tar").is_file(), s["id"]
    for v in volumes:
        assert v["state"] in VOLUME_STATES, v
        assert (q.state_dir / "volumes" / v["id"] / "meta.json").is_file(), v["id"]
        if v["state"] == "ready":
            assert (q.state_dir / "volumes" / v["id"] / "data").is_dir(), v["id"]
    for s in snapshots:
        assert s["state"] in SNAPSHOT_STATES, s
        assert (q.state_dir / "snapshots" / s["id"] / "meta.json").is_file(), s["id"]
        if s["state"] == "active":
            assert (q.state_dir / "snapshots" / s["id"] / "image.tar").is_file(), s["id"]
    # Nothing half-made shows up as an object: ids are unique, names are valid.
    for kind, objs in (("sandbox", sandboxes), ("volume", volumes), ("snapshot", snapshots)):
        ids = [o["id"] for o in objs]
        assert len(ids) == len(set(ids)), f"{kind} listed twice"
        for o in objs:
            assert o.get("name") and "tmp" not in o["id"], f"odd {kind}: {o}"


def bring_up(q, sid):
    """Gets a sandbox from any resting state to started; returns its DTO."""
    dto = get_sandbox(q, sid)
    if dto["state"] == "error":
        q.ok("POST", f"/sandbox/{sid}/recover")
    elif dto["state"] in ("stopped", "archived"):
        q.ok("POST", f"/sandbox/{sid}/start")
    return wait_sandbox(q, sid, "started", timeout=SETTLE)


def check_planted(q, sid):
    bring_up(q, sid)
    assert (home(q, sid) / "planted.txt").read_text() == PLANTED
    assert (home(q, sid) / "big.bin").read_bytes() == b"\x5a" * (2 << 20)


def restart_after_kill(q):
    q.expect_log(r"(?i)recover|interrupt|crash|resum|unfinished|incomplete|stale")
    q.kill()
    q.start()
    sandboxes, volumes, snapshots = settle(q)
    check_consistent(q, sandboxes, volumes, snapshots)
    return sandboxes, volumes, snapshots


def fire(q, method, path, json=None):
    """Sends a request on a thread; the kill may cut it off."""
    out = {}

    def run():
        try:
            out["resp"] = q.request(method, path, json=json, timeout=20)
        except OSError as e:
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


# ---- one operation, killed in its window ------------------------------------------


def test_kill_during_create(make_quaverd):
    q = make_quaverd("--transition-delay", "2000")
    src = create_sandbox(q)
    plant(q, src["id"])
    vol = create_volume(q)
    rng = random.Random(1)
    answered = []
    for round_ in range(3):
        threads = []
        for i in range(6):
            body = {"name": f"c{round_}-{i}", "env": {}, "labels": {}}
            if i % 3 == 1:
                body["volumes"] = [{"volumeId": vol["id"], "mountPath": "/v", "subpath": "s"}]
            threads.append((body["name"], *fire(q, "POST", "/sandbox", json=body)))
        time.sleep(rng.uniform(0.0, 0.05))
        sandboxes, _, _ = restart_after_kill(q)
        for t_name, t, out in threads:
            t.join(5)
            if "resp" in out and out["resp"].status == 200:
                answered.append(out["resp"].data["id"])
        listed = {s["id"] for s in sandboxes}
        missing = [sid for sid in answered if sid not in listed]
        assert not missing, f"created (200) but gone after the crash: {missing}"
    check_planted(q, src["id"])


def test_kill_during_create_from_snapshot(make_quaverd):
    q = make_quaverd("--transition-delay", "2000")
    src = create_sandbox(q)
    plant(q, src["id"])
    q.ok("POST", f"/sandbox/{src['id']}/snapshot", json={"name": "base"})
    wait_for("snapshot", lambda: q.ok("GET", "/snapshots/base")["state"] == "active",
             timeout=SETTLE)
    threads = [fire(q, "POST", "/sandbox", json={"snapshot": "base", "env": {}, "labels": {}})
               for _ in range(4)]
    time.sleep(0.1)
    sandboxes, _, _ = restart_after_kill(q)
    for t, _ in threads:
        t.join(5)
    for s in sandboxes:
        check_planted(q, s["id"])


def test_kill_during_stop(make_quaverd):
    q = make_quaverd()
    sids = [create_sandbox(q)["id"] for _ in range(5)]
    for sid in sids:
        plant(q, sid)
    threads = [fire(q, "POST", f"/sandbox/{sid}/stop") for sid in sids]
    time.sleep(0.005)
    sandboxes, _, _ = restart_after_kill(q)
    states = {s["id"]: s["state"] for s in sandboxes}
    for sid in sids:
        assert states.get(sid) in ("started", "stopped", "error"), (sid, states.get(sid))
        check_planted(q, sid)
    for t, _ in threads:
        t.join(5)


def test_kill_during_archive(make_quaverd):
    q = make_quaverd("--transition-delay", "3000")
    sid = create_sandbox(q)["id"]
    plant(q, sid)
    q.ok("POST", f"/sandbox/{sid}/stop")
    wait_sandbox(q, sid, "stopped")
    assert q.ok("POST", f"/sandbox/{sid}/archive")["state"] in ("archiving", "archived")
    time.sleep(0.5)
    assert get_sandbox(q, sid)["state"] == "archiving"
    sandboxes, _, _ = restart_after_kill(q)
    state = {s["id"]: s["state"] for s in sandboxes}[sid]
    assert state in ("stopped", "archived", "error"), state
    check_planted(q, sid)


def test_kill_during_restore(make_quaverd):
    q = make_quaverd("--transition-delay", "3000")
    sid = create_sandbox(q)["id"]
    plant(q, sid)
    q.ok("POST", f"/sandbox/{sid}/stop")
    wait_sandbox(q, sid, "stopped")
    q.ok("POST", f"/sandbox/{sid}/archive")
    wait_sandbox(q, sid, "archived", timeout=SETTLE)
    q.ok("POST", f"/sandbox/{sid}/start")
    time.sleep(0.5)
    assert get_sandbox(q, sid)["state"] == "restoring"
    sandboxes, _, _ = restart_after_kill(q)
    state = {s["id"]: s["state"] for s in sandboxes}[sid]
    assert state in ("archived", "started", "stopped", "error"), state
    check_planted(q, sid)


def test_kill_during_snapshot(make_quaverd):
    q = make_quaverd("--transition-delay", "3000")
    sid = create_sandbox(q)["id"]
    plant(q, sid)
    resp = q.ok("POST", f"/sandbox/{sid}/snapshot", json={"name": "interrupted"})
    assert resp["state"] == "snapshotting"
    time.sleep(0.5)
    sandboxes, _, snapshots = restart_after_kill(q)
    state = {s["id"]: s["state"] for s in sandboxes}[sid]
    # The sandbox returns to where it was, not "snapshotting" forever.
    assert state in ("started", "error"), state
    snaps = {s["name"]: s for s in snapshots}
    # The snapshot was accepted (200) before the crash: it is still listed.
    assert "interrupted" in snaps, f"accepted snapshot vanished: {sorted(snaps)}"
    check_planted(q, sid)
    if snaps["interrupted"]["state"] == "active":
        clone = create_sandbox(q, snapshot="interrupted")
        check_planted(q, clone["id"])
    else:
        # Retryable: it can be deleted and taken again under the same name.
        q.ok("DELETE", f"/snapshots/{snaps['interrupted']['id']}")
        wait_for("the failed snapshot to go",
                 lambda: q.request("GET", "/snapshots/interrupted").status == 404)
        q.ok("POST", f"/sandbox/{sid}/snapshot", json={"name": "interrupted"})
        wait_for("the retried snapshot",
                 lambda: q.ok("GET", "/snapshots/interrupted")["state"] == "active",
                 timeout=SETTLE)


def test_kill_during_volume_create(make_quaverd):
    q = make_quaverd("--transition-delay", "3000")
    vol = q.ok("POST", "/volumes", json={"name": unique("v")})
    assert vol["state"] == "pending_create"
    _, volumes, _ = restart_after_kill(q)
    states = {v["id"]: v["state"] for v in volumes}
    assert states.get(vol["id"]) in VOLUME_RESTING, states


def test_kill_during_delete(make_quaverd):
    q = make_quaverd()
    sids = [create_sandbox(q)["id"] for _ in range(4)]
    for sid in sids:
        plant(q, sid)
    threads = [fire(q, "DELETE", f"/sandbox/{sid}") for sid in sids]
    time.sleep(0.01)
    sandboxes, _, _ = restart_after_kill(q)
    for t, _ in threads:
        t.join(5)
    # Each is either gone, or still whole.
    for s in sandboxes:
        if s["id"] in sids:
            check_planted(q, s["id"])


# ---- kills at random offsets in a busy workload ------------------------------------


def workload(q, stop_event, planted):
    """Creates, fills, stops, archives, restores, snapshots and deletes
    sandboxes until told to stop (or until the kill cuts it off). @planted
    maps each filled sandbox to "alive", or "deleting" once a delete was sent."""
    rng = random.Random()
    try:
        while not stop_event.is_set():
            dto = q.ok("POST", "/sandbox", json={"name": unique("w"), "env": {}, "labels": {}})
            sid = dto["id"]
            wait_sandbox(q, sid, "started", timeout=5)
            plant(q, sid)
            planted[sid] = "alive"
            op = rng.choice(["stop", "archive", "snapshot", "delete", "restore"])
            if op in ("stop", "archive", "restore"):
                q.ok("POST", f"/sandbox/{sid}/stop")
                wait_sandbox(q, sid, "stopped", timeout=5)
            if op in ("archive", "restore"):
                q.ok("POST", f"/sandbox/{sid}/archive")
                wait_sandbox(q, sid, "archived", timeout=5)
            if op == "restore":
                q.ok("POST", f"/sandbox/{sid}/start")
            if op == "snapshot":
                q.ok("POST", f"/sandbox/{sid}/snapshot", json={"name": unique("ws")})
            if op == "delete":
                planted[sid] = "deleting"
                q.ok("DELETE", f"/sandbox/{sid}")
    except Exception:  # noqa: BLE001 (the kill ends the workload)
        pass


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 22, 33, 44, 55])
def test_kill_at_random_offsets(make_quaverd, seed):
    q = make_quaverd()
    q.expect_log(r"(?i)recover|interrupt|crash|resum|unfinished|incomplete|stale")
    rng = random.Random(seed)
    planted = {}
    for _ in range(3):
        stop_event = threading.Event()
        t = threading.Thread(target=workload, args=(q, stop_event, planted), daemon=True)
        t.start()
        time.sleep(rng.uniform(0.05, 0.6))
        q.kill()
        # The workload's next request fails against the dead port; wait for
        # it so it does not go on against the restarted quaverd.
        stop_event.set()
        t.join(10)
        assert not t.is_alive()
        q.start()
        sandboxes, volumes, snapshots = settle(q)
        check_consistent(q, sandboxes, volumes, snapshots)
        listed = {s["id"] for s in sandboxes}
        lost = [sid for sid, what in planted.items() if what == "alive" and sid not in listed]
        assert not lost, f"sandboxes lost in the crash: {lost}"
        for sid in listed & set(planted):
            check_planted(q, sid)
        for snap in snapshots:
            if snap["state"] == "active":
                clone = create_sandbox(q, snapshot=snap["id"])
                assert (home(q, clone["id"]) / "planted.txt").read_text() == PLANTED
                q.ok("DELETE", f"/sandbox/{clone['id']}")
