"""quaverd's auth and state dir contract (doc/quaverd.md, issue 2): Bearer
token, file modes, the token kept out of logs, refusing unsafe or shared
state dirs."""

import os
import re
import stat
import subprocess
import time
import urllib.parse

import pytest

from helpers.daytona import assert_daytona_error, create_sandbox, create_volume, unique
from helpers.quaverd import Quaverd, quaverd_bin


def assert_unauthorized(resp):
    body = assert_daytona_error(resp, 401)
    assert body["error"] == "Unauthorized"
    return body


@pytest.mark.parametrize("path", ["/sandbox", "/volumes", "/snapshots",
                                  "/sandbox/anything", "/no-such-route"])
def test_no_token_is_401(shared_quaverd, path):
    assert_unauthorized(shared_quaverd.request("GET", path, token=None))


@pytest.mark.parametrize("header", [
    "Bearer wrong",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "bearer-less",
])
def test_wrong_authorization_is_401(shared_quaverd, header):
    resp = shared_quaverd.request("GET", "/sandbox", token=None,
                                  headers={"Authorization": header})
    assert_unauthorized(resp)


def test_token_with_one_character_changed_is_401(shared_quaverd):
    token = shared_quaverd.token
    wrong = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert_unauthorized(shared_quaverd.request("GET", "/sandbox", token=wrong))
    assert_unauthorized(shared_quaverd.request("GET", "/sandbox", token=token + "0"))
    assert_unauthorized(shared_quaverd.request("GET", "/sandbox", token=token[:-1]))


def test_mutations_without_token_change_nothing(shared_quaverd):
    q = shared_quaverd
    name = unique("noauth")
    assert_unauthorized(q.request("POST", "/sandbox", token=None,
                                  json={"name": name, "env": {}, "labels": {}}))
    assert_unauthorized(q.request("POST", "/volumes", token="nope", json={"name": name}))
    assert q.request("GET", f"/sandbox/{name}").status == 404
    assert q.request("GET", f"/volumes/by-name/{name}").status == 404


def test_toolbox_path_needs_the_token_too(shared_quaverd):
    q = shared_quaverd
    dto = create_sandbox(q)
    base = dto["toolboxProxyUrl"].rstrip("/") + "/" + dto["id"]
    assert_unauthorized(q.request_url("GET", base + "/version", token=None))
    assert_unauthorized(q.request_url("GET", base + "/files?path=/", token="wrong"))


def test_good_token_is_accepted(shared_quaverd):
    assert shared_quaverd.request("GET", "/sandbox").status == 200


def test_token_file_is_0600_and_64_hex(quaverd):
    st = os.stat(quaverd.state_dir / "token")
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert re.fullmatch(r"[0-9a-f]{64}", quaverd.token), "token is not 64 hex characters"
    assert (quaverd.state_dir / "token").read_text() in (quaverd.token, quaverd.token + "\n")


def test_state_dir_is_created_0700(quaverd):
    assert stat.S_IMODE(os.stat(quaverd.state_dir).st_mode) == 0o700


def test_port_and_url_files(quaverd):
    port = (quaverd.state_dir / "port").read_text()
    assert re.fullmatch(r"[0-9]+\n", port)
    url = (quaverd.state_dir / "url").read_text()
    assert url == f"http://127.0.0.1:{int(port)}/api\n"
    assert urllib.parse.urlsplit(url.strip()).port == quaverd.port


def test_token_is_kept_across_restarts(quaverd):
    first = quaverd.token
    quaverd.restart()
    assert quaverd.token == first
    assert quaverd.request("GET", "/sandbox", token=first).status == 200


def test_two_installations_have_different_tokens(make_quaverd):
    a = make_quaverd(name="a")
    b = make_quaverd(name="b")
    assert a.token != b.token
    assert_unauthorized(b.request("GET", "/sandbox", token=a.token))


def test_token_never_appears_in_logs(quaverd):
    q = quaverd
    sbx = create_sandbox(q, name=unique("log"))
    create_volume(q)
    q.request("GET", "/sandbox")
    q.request("GET", f"/sandbox/{sbx['id']}?verbose=true")
    q.request("POST", f"/sandbox/{sbx['id']}/stop")
    q.request("GET", "/sandbox/no-such")
    q.request("POST", "/sandbox", body=b"{bad json")
    q.request("GET", "/sandbox", token=None)
    q.request("GET", "/sandbox", token=q.token[:32])
    q.request_url("GET", sbx["toolboxProxyUrl"].rstrip("/") + "/" + sbx["id"] + "/version")
    q.stop()
    log = q.log_text()
    assert log, "debug logging wrote nothing"
    assert len([ln for ln in log.splitlines() if " debug: " in ln]) >= 8, \
        "expected one debug line per request"
    for secret in (q.token, q.token[:32], q.token[32:]):
        assert secret not in log, "the token (or half of it) is in the log"
        assert secret not in q.read_stderr()


def test_world_readable_state_dir_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    q = Quaverd(tmp_path, state_dir=state)
    proc = subprocess.run(q.command(), capture_output=True, timeout=10)
    assert proc.returncode == 1, proc
    assert proc.stderr.strip(), "no message on stderr"
    assert not (state / "token").exists()
    assert not (state / "url").exists()


@pytest.mark.parametrize("mode", [0o750, 0o710, 0o770, 0o707, 0o701])
def test_group_or_other_access_is_refused(tmp_path, mode):
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, mode)
    proc = subprocess.run([quaverd_bin(), "--state-dir", str(state), "--port", "0"],
                          capture_output=True, timeout=10)
    assert proc.returncode == 1, (oct(mode), proc)
    assert proc.stderr.strip(), "no message on stderr"
    assert not (state / "token").exists()


def test_second_quaverd_on_the_same_state_dir_refuses(make_quaverd, tmp_path):
    first = make_quaverd()
    second = Quaverd(tmp_path / "second", state_dir=first.state_dir, name="second")
    proc = subprocess.run(second.command(), capture_output=True, timeout=10)
    said = proc.stderr.decode(errors="replace") + second.log_text()
    assert proc.returncode == 1, proc
    assert "already running" in said, said
    # The first one is unharmed and its files still point at it.
    assert first.running
    assert first.request("GET", "/sandbox").status == 200
    assert (first.state_dir / "url").read_text().strip() == first.url


def test_sigterm_exits_zero(quaverd):
    create_sandbox(quaverd)
    t0 = time.monotonic()
    assert quaverd.stop() == 0
    assert time.monotonic() - t0 < 5
