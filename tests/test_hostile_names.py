"""Hostile names (issue 7): mkdir with names the backend would refuse, names
that differ only in case, ids of other objects, names with newlines, over a
real quaverd; and a backend of our own (hostile_backend.py) that sends
names with '/', '..', NUL, control characters, 10 MB, repeated names,
100,000 entries and pages that never end. quaverfs lists only names a file
can have, once each, bounds what it keeps, and keeps serving."""

import errno
import os
import re
import time

import pytest

from fsmount import *  # noqa: F401,F403
from fsmount import report_logs
from hostile_backend import HostileBackend, sandbox_record


# Under ASan (tools/test's sanitizer pass) every allocation carries redzones
# and a freed-memory quarantine: memory bounds are twice as wide there.
SLACK = 2 if os.environ.get("QUAVER_SANITIZED") else 1


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---- over quaverd --------------------------------------------------------------

@pytest.fixture(scope="module")
def nm(tmp_path_factory, request):
    def setup(m):
        m.sh("mkdir sandboxes/CaseBox && mkdir volumes/vol1")
    yield from mount_session(tmp_path_factory.mktemp("hostile-names"), request, setup)


def refused_mkdir(m, coll, name, want=errno.EINVAL):
    before = m.qd.view()
    got = errno_of(os.mkdir, os.path.join(str(m.path(coll)), name))
    assert got == want, f"mkdir {coll}/{name!r}: {errno.errorcode.get(got, got)}"
    assert m.qd.view() == before, "the backend changed"
    root = m.read("error")
    assert "\n" not in root.rstrip("\n") and "\x1b" not in root, repr(root)
    m.expect_fs_log(r"warn: (sandboxes|volumes)/")
    return root


@pytest.mark.parametrize("name", ["a\nb", "a\rb", "tab\there", "esc\x1b[31m", "bell\x07",
                                  "del\x7f", "x" * 64, "x" * 255, "\u0430dmin", "na\u0308me",
                                  "a%2Fb", "%2e%2e", "-", ".hidden", "trailing ", " lead",
                                  "semi;", "quote'", "dollar$", "star*", "back\\slash"])
@pytest.mark.parametrize("coll", ["sandboxes", "volumes"])
def test_mkdir_of_names_the_backend_refuses(nm, coll, name):
    root = refused_mkdir(nm, coll, name)
    # the error node shows the name quoted, never its raw control characters
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", root), repr(root)
    assert name not in nm.listdir(coll)


def test_names_that_differ_only_in_case(nm):
    """Names are case-sensitive, as on Daytona: `casebox` is another
    sandbox than `CaseBox`, each name leads to its own record."""
    m = nm
    m.sh("mkdir sandboxes/casebox")
    names = m.listdir("sandboxes")
    assert "CaseBox" in names and "casebox" in names
    a, b = m.read("sandboxes/CaseBox/id").strip(), m.read("sandboxes/casebox/id").strip()
    assert a != b
    assert m.qd.get("sandbox", "CaseBox")["id"] == a
    assert m.qd.get("sandbox", "casebox")["id"] == b
    # and a third spelling is not there
    assert errno_of(os.stat, m.path("sandboxes/CASEBOX")) == errno.ENOENT
    os.rmdir(m.path("sandboxes/casebox"))
    assert m.read("sandboxes/CaseBox/id").strip() == a


def test_mkdir_with_the_id_of_another_sandbox(nm):
    """sandboxes/<id> is that sandbox (a symlink to its name): mkdir of it is
    EEXIST, and no sandbox named like another's id is made."""
    m = nm
    sid = m.read("sandboxes/CaseBox/id").strip()
    before = m.qd.view()
    assert errno_of(os.mkdir, m.path("sandboxes", sid)) == errno.EEXIST
    assert m.qd.view() == before
    assert os.readlink(m.path("sandboxes", sid)) == "CaseBox"
    m.expect_fs_log(r"warn: sandboxes/")


def test_mkdir_with_the_id_of_a_volume(nm):
    """A sandbox named like a volume's id is another kind of object: it is
    made, and both stay reachable by their own names."""
    m = nm
    vid = m.read("volumes/vol1/id").strip()
    m.sh(f"mkdir volumes/{vid}x", check=False)  # a name, not an id: allowed or not, no harm
    os.mkdir(m.path("sandboxes", vid))
    assert m.qd.get("sandbox", vid)["name"] == vid
    assert m.read("volumes/vol1/id").strip() == vid
    assert m.read("sandboxes", vid, "state") == "started\n"
    os.rmdir(m.path("sandboxes", vid))
    if os.path.isdir(m.path("volumes", vid + "x")):
        os.rmdir(m.path("volumes", vid + "x"))


# ---- a hostile backend ------------------------------------------------------------

@pytest.fixture
def hostile(tmp_path, request):
    backends, mounts = [], []

    def start(setup):
        b = HostileBackend()
        backends.append(b)
        setup(b)
        m = Mount(tmp_path / f"m{len(mounts)}", api_url=b.url, key="hostile-test-key")
        mounts.append(m)
        m.start()
        report_logs(request.node, m)
        return b, m

    yield start
    problems = []
    for m in mounts:
        problems += m.finish()
    for b in backends:
        b.close()
    if problems:
        pytest.fail("teardown found problems:\n" + "\n".join(problems), pytrace=False)


BAD_NAMES = ["a/b", "/", "..", ".", "", "../../etc", "x\0y", "esc\x1b]0;owned\x07",
             "new\nline", "x" * 256, ".Trash", "autorun.inf"]


def test_hostile_names_are_dropped(hostile):
    def setup(b):
        recs = [sandbox_record("good1")]
        recs += [sandbox_record(n) for n in BAD_NAMES]
        recs += [sandbox_record("x")]  # what "x\0y" would be cut to
        recs += [sandbox_record("dup"), sandbox_record("dup")]
        recs += [sandbox_record("y" * (10 << 20))]  # a 10 MB name
        recs += [sandbox_record("good2")]
        b.sandboxes = recs
    b, m = hostile(setup)
    names = m.listdir("sandboxes")
    # a nameless sandbox goes by its id
    nameless = [r["id"] for r in b.sandboxes if r["name"] == ""][0]
    assert sorted(set(names) - {nameless}) == ["dup", "good1", "good2", "x"], names
    assert len(names) == len(set(names)), names
    # each listed name is one object; the cut-short NUL name is not "x"
    xid = [r["id"] for r in b.sandboxes if r["name"] == "x"][0]
    assert m.read("sandboxes/x/id").strip() == xid
    assert m.read("sandboxes/good1/state") == "started\n"
    for bad in ["..", "a", "esc", "new"]:
        assert bad not in names
    assert m.status()["reachable"] == "yes"
    assert m.proc.poll() is None


def generated(b, prefix, total, endless=False):
    """b lists @total sandboxes PREFIX0, PREFIX1, ... in pages of 5000."""
    def rec(i):
        return {"id": f"00000000-0000-4000-8000-{i:012d}", "name": f"{prefix}{i}",
                "state": "started", "env": {}, "labels": {}}

    def find(key):
        digits = key[len(prefix):] if key.startswith(prefix) else key.rsplit("-", 1)[-1]
        return rec(int(digits)) if digits.isdigit() and int(digits) < total else None
    b.sandboxes, b.find, b.total, b.endless, b.page_size = rec, find, total, endless, 5000


def first_entries(path, n=20):
    """The first @n names of a listing (one getdents): the walk behind it is
    whole, without a lookup per entry of a huge directory."""
    with os.scandir(path) as it:
        return [e.name for _, e in zip(range(n), it)]


def walk_pages(b):
    return sum(1 for meth, p in b.requests if p.startswith("/api/sandbox?"))


def test_a_hundred_thousand_sandboxes(hostile):
    """100,000 entries (fs-layout.md's bound): one paged walk, in bounded time
    and memory; the last one is reachable by name; the mount keeps serving."""
    b, m = hostile(lambda b: generated(b, "s", 100000))
    t0 = time.monotonic()
    first = call(first_entries, m.path("sandboxes"), timeout=120)
    took = time.monotonic() - t0
    assert first and all(re.fullmatch(r"s\d+", n) for n in first), first
    assert took < 60, f"a walk of 100000 sandboxes took {took:.1f} s"
    assert walk_pages(b) <= 100000 // 5000 + 1, walk_pages(b)
    assert m.read("sandboxes/s99999/state") == "started\n"
    assert m.status()["sandboxes"] == "100000"
    assert rss_kib(m.proc.pid) < 512 * 1024 * SLACK, f"quaverfs RSS {rss_kib(m.proc.pid)} KiB"


def test_pages_that_never_end(hostile):
    """A server whose cursor never ends: quaverfs stops at 100,000 entries,
    says so in the log, and keeps serving."""
    b, m = hostile(lambda b: generated(b, "e", 10 ** 9, endless=True))
    m.expect_fs_log(r"more than 100000 sandboxes")
    call(first_entries, m.path("sandboxes"), timeout=120)
    assert walk_pages(b) <= 100000 // 5000 + 1, walk_pages(b)
    assert "more than 100000 sandboxes" in m.log_text()
    assert m.status()["sandboxes"] == "100000"
    assert m.status()["reachable"] == "yes"
    assert m.read("sandboxes/e7/state") == "started\n"
    assert rss_kib(m.proc.pid) < 512 * 1024 * SLACK, f"quaverfs RSS {rss_kib(m.proc.pid)} KiB"


def test_snapshot_pages_that_never_end(hostile):
    def setup(b):
        b.snapshot_pages = (1000, 10 ** 9)
    b, m = hostile(setup)
    m.expect_fs_log(r"more than 100000 snapshots")
    call(first_entries, m.path("snapshots"), timeout=120)
    assert m.status()["snapshots"] == "100000"
    assert m.status()["reachable"] == "yes"


@pytest.mark.parametrize("body", [b"not json", b"{\"items\": 5}", b"[" * 100000,
                                  b"{\"items\": [1, \"x\", null, []]}",
                                  b"\xff\xfe\x00garbage"])
def test_list_answers_that_are_not_a_listing(hostile, body):
    """A list answer that is not a listing: EIO with a reason in the root
    error node; the mount stays up and recovers when the server does."""
    def setup(b):
        b.raw_list = body
        b.sandboxes = [sandbox_record("fine")]
    b, m = hostile(setup)
    m.expect_fs_log(r"sandboxes|list sandboxes|JSON|items")
    got = errno_of(os.listdir, m.path("sandboxes"))
    if got == 0:
        # a list of junk records: each dropped, the listing empty
        assert m.listdir("sandboxes") == []
    else:
        assert got == errno.EIO, errno.errorcode.get(got, got)
        assert m.read("error").strip()
    b.raw_list = None
    m.write("control", "flush\n")
    assert m.listdir("sandboxes") == ["fine"]
