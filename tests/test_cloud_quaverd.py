"""quaverd --cloud-like (doc/quaverd.md "Cloud-like mode"): the toolbox on
a port of its own, creating/starting/stopping that last, seeded 429/503
answers. Spoken to over HTTP as any client would."""

import signal
import subprocess
import time
import urllib.parse

from helpers.quaverd import quaverd_bin

QUAVERFS_SOURCE = {"X-Daytona-Source": "quaverfs"}


def toolbox_base(q):
    url = (q.state_dir / "toolbox_url").read_text().strip()
    return url, urllib.parse.urlsplit(url).port


def wait_state(q, name, state, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        rec = q.ok("GET", f"/sandbox/{name}")
        if rec["state"] == state:
            return rec
        assert time.monotonic() < deadline, f"{name} still {rec['state']}, not {state}"
        time.sleep(0.05)


def test_cloud_options_need_cloud_like(tmp_path):
    for opt in (["--fault-rate", "0.1"], ["--toolbox-port", "0"], ["--lifecycle-delay", "5"]):
        r = subprocess.run([quaverd_bin(), "--state-dir", str(tmp_path / "s"), *opt],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and "need --cloud-like" in r.stderr, r
    r = subprocess.run([quaverd_bin(), "--state-dir", str(tmp_path / "s"), "--cloud-like",
                        "--fault-rate", "1.5"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--fault-rate" in r.stderr


def test_toolbox_port_and_lasting_states(make_quaverd):
    q = make_quaverd("--cloud-like", "--lifecycle-delay", "400", "--transition-delay", "300")
    tb_url, tb_port = toolbox_base(q)
    assert tb_port != q.port
    rec = q.ok("POST", "/sandbox", json={"name": "c1"})
    assert rec["state"] == "creating" and rec["toolboxProxyUrl"] == tb_url
    assert q.ok("GET", "/sandbox/c1")["state"] == "creating"
    # not started yet: the toolbox refuses, as the cloud's does
    s, _ = q.request_url("GET", f"{tb_url}/{rec['id']}/files?path=/home")
    assert s == 409
    rec = wait_state(q, "c1", "started")
    assert q.ok("GET", f"/sandbox/{rec['id']}/toolbox-proxy-url")["url"] == tb_url

    # the toolbox answers on its port only; the API on its own only
    s, data = q.request_url("GET", f"{tb_url}/{rec['id']}/files?path=/home")
    assert s == 200 and [e["name"] for e in data] == ["daytona"]
    s, data = q.request_path("GET", f"/toolbox/{rec['id']}/files?path=/home")
    assert s == 404 and data["message"].startswith("Cannot GET /toolbox/")
    s, _ = q.request_path("GET", "/api/sandbox", port=tb_port)
    assert s == 404

    # stop: stopping for a while (a second stop is no error), then stopped
    assert q.ok("POST", "/sandbox/c1/stop")["state"] == "stopping"
    assert q.ok("POST", "/sandbox/c1/stop")["state"] == "stopping"
    s, data = q.request("POST", "/sandbox/c1/archive")
    assert s == 409 and "in progress" in data["message"]
    wait_state(q, "c1", "stopped")
    assert q.ok("POST", "/sandbox/c1/start")["state"] == "starting"
    assert q.ok("POST", "/sandbox/c1/start")["state"] == "starting"
    wait_state(q, "c1", "started")
    s, _ = q.request_url("GET", f"{tb_url}/{rec['id']}/files?path=/home")
    assert s == 200


def test_stopping_interrupted_by_a_kill_resolves_to_stopped(make_quaverd):
    q = make_quaverd("--cloud-like", "--lifecycle-delay", "100")
    q.ok("POST", "/sandbox", json={"name": "k1"})
    wait_state(q, "k1", "started")
    q.restart(extra=["--lifecycle-delay", "30000"])
    assert q.ok("POST", "/sandbox/k1/stop")["state"] == "stopping"
    q.kill(signal.SIGKILL)
    q.start()
    assert q.ok("GET", "/sandbox/k1")["state"] == "stopped"


def statuses(q, n, headers):
    out = []
    for _ in range(n):
        r = q.request("GET", "/sandbox", headers=headers)
        out.append((r.status, r.headers.get("retry-after")))
    return out


def test_faults_are_seeded_and_aimed_at_one_source(make_quaverd):
    args = ("--cloud-like", "--fault-rate", "0.3", "--fault-seed", "42",
            "--fault-source", "quaverfs", "--fault-retry-after", "2")
    q = make_quaverd(*args)
    # the tests' own requests (another X-Daytona-Source) are never touched
    assert {s for s, _ in statuses(q, 30, None)} == {200}
    first = statuses(q, 60, QUAVERFS_SOURCE)
    codes = [s for s, _ in first]
    assert codes.count(200) >= 30 and set(codes) == {200, 429, 503}, codes
    assert all(ra == "2" for s, ra in first if s == 429)
    assert all(ra is None for s, ra in first if s != 429)
    # the same seed, the same answers
    q.restart()
    assert statuses(q, 60, QUAVERFS_SOURCE) == first
    # a POST is never answered 503 (the client could not know what was done)
    q2 = make_quaverd("--cloud-like", "--fault-rate", "1", "--fault-seed", "1")
    for i in range(10):
        r = q2.request("POST", "/volumes", json={"name": f"v{i}"})
        assert r.status == 429 and r.headers.get("retry-after") == "1"
        assert r.data["statusCode"] == 429
    assert q2.request("GET", "/volumes").status in (429, 503)
