"""Daytona-level helpers for the quaverd suites: waiting for states, creating
objects that must succeed, and checking error bodies the way the SDK reads
them (../shared/daytona-api.md section 1.3)."""

import time
import uuid

from .quaverd import quote

SANDBOX_STATES = {
    "creating", "restoring", "pending_build", "building_snapshot", "pulling_snapshot",
    "starting", "started", "stopping", "stopped", "archiving", "archived",
    "pausing", "paused", "resuming", "resizing", "snapshotting", "forking",
    "destroying", "destroyed", "error", "build_failed", "unknown",
}
VOLUME_STATES = {"pending_create", "creating", "ready", "pending_delete", "deleting",
                 "deleted", "error"}
SNAPSHOT_STATES = {"building", "pending", "pulling", "snapshotting", "active", "inactive",
                   "error", "build_failed", "removing"}

# States a sandbox may rest in (nothing more happens by itself).
SANDBOX_FINAL = {"started", "stopped", "archived", "destroyed", "error", "build_failed"}
VOLUME_FINAL = {"ready", "deleted", "error"}
SNAPSHOT_FINAL = {"active", "inactive", "error", "build_failed"}

WAIT = 15.0


def unique(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(what, probe, timeout=WAIT, interval=0.05):
    """Calls probe() until it returns something truthy; fails after @timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def get_sandbox(q, ref):
    return q.ok("GET", f"/sandbox/{quote(ref)}")


def wait_sandbox(q, ref, states, timeout=WAIT, allow_error=False):
    """Polls GET /sandbox/{ref} until its state is in @states; returns the DTO.
    Reaching "error" or "build_failed" fails at once unless it is wanted."""
    if isinstance(states, str):
        states = {states}
    seen = []

    def probe():
        dto = get_sandbox(q, ref)
        state = dto.get("state")
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in states:
            return dto
        if state in ("error", "build_failed") and not allow_error:
            raise AssertionError(f"sandbox {ref} went to {state}: {dto.get('errorReason')!r}"
                                 f" (states seen: {seen})")
        return None

    try:
        return wait_for(f"sandbox {ref} to reach {sorted(states)}", probe, timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}; states seen: {seen}") from None


def create_sandbox(q, wait=True, **body):
    """POST /sandbox; must answer 200. Waits for "started" unless told not to."""
    body.setdefault("env", {})
    body.setdefault("labels", {"code-toolbox-language": "python"})
    dto = q.ok("POST", "/sandbox", json=body)
    assert dto.get("id"), dto
    if wait and dto.get("state") != "started":
        dto = wait_sandbox(q, dto["id"], "started")
    return dto


def wait_volume(q, volume_id, states, timeout=WAIT):
    if isinstance(states, str):
        states = {states}
    return wait_for(f"volume {volume_id} to reach {sorted(states)}",
                    lambda: (lambda v: v if v.get("state") in states else None)(
                        q.ok("GET", f"/volumes/{quote(volume_id)}")), timeout)


def create_volume(q, name=None, wait=True):
    dto = q.ok("POST", "/volumes", json={"name": name or unique("vol")})
    if wait and dto.get("state") != "ready":
        dto = wait_volume(q, dto["id"], "ready")
    return dto


def wait_snapshot(q, ref, states, timeout=WAIT):
    if isinstance(states, str):
        states = {states}

    def probe():
        status, dto = q.request("GET", f"/snapshots/{quote(ref)}")
        assert status == 200, (status, dto)
        if dto.get("state") in states:
            return dto
        if dto.get("state") in ("error", "build_failed") and not states & {"error"}:
            raise AssertionError(f"snapshot {ref} went to {dto.get('state')}: "
                                 f"{dto.get('errorReason')!r}")
        return None

    return wait_for(f"snapshot {ref} to reach {sorted(states)}", probe, timeout)


def snapshot_sandbox(q, sandbox_ref, name):
    """POST /sandbox/{s}/snapshot, then waits for the snapshot to be active and
    the sandbox to leave "snapshotting"; returns (snapshot DTO, sandbox DTO)."""
    q.ok("POST", f"/sandbox/{quote(sandbox_ref)}/snapshot", json={"name": name})
    snap = wait_snapshot(q, name, "active")
    sbx = wait_for(f"sandbox {sandbox_ref} to leave snapshotting",
                   lambda: (lambda d: d if d["state"] != "snapshotting" else None)(
                       get_sandbox(q, sandbox_ref)))
    return snap, sbx


def list_all_sandboxes(q, query="", limit=100):
    """Follows nextCursor to the end; returns every item in order."""
    items = []
    cursor = None
    for _ in range(1000):
        qs = f"limit={limit}" + (f"&{query}" if query else "")
        if cursor is not None:
            qs += "&cursor=" + quote(cursor)
        page = q.ok("GET", "/sandbox?" + qs)
        assert set(page) >= {"items", "nextCursor"}, page
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["nextCursor"]
        if cursor is None:
            return items
        assert page["items"], "a page with a nextCursor must not be empty"
    raise AssertionError("paging never ended")


def short(data, limit=300):
    """A response body for an assertion message, cut to a readable length."""
    text = repr(data)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def assert_daytona_error(resp, status):
    """A Daytona-shaped error: the expected status, and a JSON body with
    statusCode, error and a non-empty message (what the SDK shows a user)."""
    got_status, body = resp
    assert got_status == status, f"expected {status}, got {got_status}: {short(body)}"
    assert isinstance(body, dict), f"error body is not JSON: {short(body)}"
    assert body.get("statusCode") == status, body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"].strip(), body
    return body
