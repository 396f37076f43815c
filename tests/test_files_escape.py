"""Escape attempts from inside a sandbox's storage (issue 4 acceptance):
symlinks planted in the sandbox's own tree (through quaverd's state dir,
as a process inside the sandbox could make them) pointing at /etc/shadow,
at ../../.., at the state dir's token, at a host file outside the state
dir; symlinks inside a volume's data; volume subpaths that climb out.
Neither quaverfs (through files/) nor quaverd (through the toolbox API)
may ever return a byte from outside the sandbox's view.
"""

import errno
import json
import os
import secrets
import stat as statmod

import pytest

from files_helpers import HOME, FilesEnv, bounded, create_sandbox, run
from fsmount import mount_session

READ_MAX = 1 << 20


def host_shadow_first_line():
    with open("/etc/shadow", "rb") as f:
        return f.readline().rstrip(b"\n")


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    """A host file outside quaverd's state dir with a unique content."""
    d = tmp_path_factory.mktemp("host-outside")
    p = d / "canary.txt"
    p.write_bytes(b"CANARY-" + secrets.token_hex(16).encode() + b"\n")
    return p


@pytest.fixture(scope="module")
def fenv(tmp_path_factory, request, canary):
    base = tmp_path_factory.mktemp("escape")
    env = {}

    def setup(m):
        m.sh("mkdir volumes/vol")
        qd = m.qd
        vol = qd.get("volume", "vol")
        data = qd.state_dir / "volumes" / vol["id"] / "data"
        # inside the volume: a subpath directory holding links out, and a
        # top-level symlink someone might name as a subpath
        (data / "sub").mkdir()
        (data / "sub" / "ok.txt").write_text("volume file\n")
        os.symlink("/etc/shadow", data / "sub" / "shadow")
        os.symlink("../../../../../../../../..", data / "sub" / "up")
        os.symlink(os.path.relpath(qd.state_dir / "token", data / "sub"), data / "sub" / "token")
        os.symlink(str(canary), data / "sub" / "canary")
        os.symlink("/etc", data / "evil")
        create_sandbox(m, options="volume=vol:/mnt/v:sub")
        env["env"] = FilesEnv(m)
        env["env"].volume_data = data

    for _ in mount_session(base, request, setup):
        yield env["env"]


def secrets_of(fenv, canary):
    """Byte strings that must never come out of the mount or the API."""
    token = (fenv.qd.state_dir / "token").read_bytes().strip()
    org = (fenv.qd.state_dir / "organization").read_bytes().strip()
    out = {"token": token, "organization": org, "canary": canary.read_bytes().strip()}
    shadow = host_shadow_first_line()
    if shadow:
        out["host /etc/shadow line 1"] = shadow
    return out


def plant(fenv, canary):
    """Symlinks in the sandbox's home (through the state dir): esc/files/
    holds links that name files, esc/dirs/ links that name directories
    (up to the view's root). Returns esc's sandbox path."""
    esc = fenv.storage / "home" / "daytona" / "esc"
    if esc.exists():
        return f"{HOME}/esc"
    files, dirs = esc / "files", esc / "dirs"
    files.mkdir(parents=True)
    dirs.mkdir()
    state = fenv.qd.state_dir
    file_links = {
        "shadow": "/etc/shadow",
        "up-shadow": "../" * 12 + "etc/shadow",
        "token-abs": str(state / "token"),
        "token-rel": os.path.relpath(state / "token", files),
        "org-abs": str(state / "organization"),
        "canary-abs": str(canary),
        "canary-rel": os.path.relpath(canary, files),
        "proc-shadow": "/proc/self/root/etc/shadow",
        "proc-environ": "/proc/self/environ",
        "chain1": "chain2",
        "chain2": "chain3",
        "chain3": "/etc/shadow",
        "loop": "loop",
        "dangling": "/nonexistent/target",
        "to-real": "real.txt",
    }
    dir_links = {
        "up": "../../..",
        "way-up": "../" * 12,
        "state-abs": str(state),
        "state-rel": os.path.relpath(state, dirs),
        "canary-dir": str(canary.parent),
        "hostroot": "/",
        "proc-root": "/proc/self/root",
        "proc-cwd": "/proc/self/cwd",
        "etc": "/etc",
    }
    for name, target in file_links.items():
        os.symlink(target, files / name)
    (files / "real.txt").write_text("a real file\n")
    for name, target in dir_links.items():
        os.symlink(target, dirs / name)
    (dirs / "nest").mkdir()
    os.symlink("../" * 10, dirs / "nest" / "deep-up")
    os.symlink(str(state), fenv.storage / "tmp" / "state-link")
    return f"{HOME}/esc"


# What a walk through a link to the view's root skips: the host's /usr is
# part of the view (read-only, doc/quaverd.md), so reading it is no escape,
# only slow.
SKIP = {"usr", "bin", "sbin", "lib", "lib64"}


def read_limited(path):
    with open(path, "rb") as f:
        return f.read(READ_MAX)


def gather(path, depth=3, seen=None):
    """Everything readable at @path through the mount, following directory
    symlinks (to @depth levels): [(path, bytes or errno or listing)]."""
    out = []
    try:
        st = os.stat(path)
    except OSError as e:
        return [(str(path), e.errno)]
    if statmod.S_ISDIR(st.st_mode):
        try:
            names = sorted(os.listdir(path))
        except OSError as e:
            return [(str(path), e.errno)]
        out.append((str(path), "\n".join(names).encode()))
        if depth > 0:
            for n in names:
                if n not in SKIP:
                    out += gather(os.path.join(path, n), depth - 1)
        return out
    try:
        out.append((str(path), read_limited(path)))
    except OSError as e:
        out.append((str(path), e.errno))
    return out


def assert_clean(found, forbidden):
    for where, value in found:
        if isinstance(value, bytes):
            for what, secret in forbidden.items():
                assert secret not in value, f"{where} returned the {what}"


@bounded(120)
def test_planted_symlinks_never_leak_through_the_mount(fenv, canary):
    vp = plant(fenv, canary)
    forbidden = secrets_of(fenv, canary)
    esc = fenv.mount_path(vp)
    assert_clean(gather(esc, depth=4), forbidden)
    # everything under the sandbox's /tmp and the whole volume mount too
    assert_clean(gather(fenv.mount_path("/tmp"), depth=2), forbidden)
    assert_clean(gather(fenv.mount_path("/mnt/v"), depth=3), forbidden)
    # the real file and the link to it inside the sandbox still work
    assert read_limited(esc / "files" / "real.txt") == b"a real file\n"
    if "to-real" in os.listdir(esc / "files"):
        assert read_limited(esc / "files" / "to-real") == b"a real file\n"
    # the shell's ways in: cat, grep -R, tar -h, find -L on the file links;
    # cat of the names a climb out would reach through the directory links
    for script in ("cat esc/files/* 2>/dev/null; true",
                   "grep -Rah . esc/files 2>/dev/null; true",
                   "tar chf - esc/files 2>/dev/null | cat; true",
                   "find -L esc/files -type f -exec cat {} + 2>/dev/null; true",
                   "cat esc/dirs/*/token esc/dirs/*/organization esc/dirs/*/canary.txt "
                   "esc/dirs/*/etc/shadow esc/dirs/*/shadow esc/dirs/*/*/token "
                   "esc/dirs/nest/deep-up/etc/shadow 2>/dev/null; true",
                   "ls -laR esc/dirs/state-abs/ esc/dirs/state-rel/ esc/dirs/canary-dir/ "
                   "2>/dev/null; true"):
        r = run(["bash", "-c", script], cwd=fenv.home, timeout=60)
        out = r.stdout.encode()
        for what, secret in forbidden.items():
            assert secret not in out, f"{script!r} printed the {what}"


def errno_of(fn, *args):
    try:
        fn(*args)
        return 0
    except OSError as e:
        return e.errno


@bounded(120)
def test_symlinks_as_the_contract_says(fenv, canary):
    """fs-layout.md "files/": no node of files/ is a link; a link of the
    sandbox shows as what it points to inside the sandbox's view (the
    sandbox's listings follow links and skip those that resolve to
    nothing); a link back up to an ancestor is listed empty; symlink,
    link and mknod are refused with EPERM."""
    vp = plant(fenv, canary)
    esc = fenv.mount_path(vp)
    for sub in ("files", "dirs"):
        api = {e["name"]: e for e in fenv.tb.listing(f"{vp}/{sub}")}
        listed = sorted(os.listdir(esc / sub))
        assert listed == sorted(api), sub
        for name in listed:
            st = os.lstat(esc / sub / name)
            assert not statmod.S_ISLNK(st.st_mode), f"{sub}/{name} shows as a link"
            assert statmod.S_ISDIR(st.st_mode) == api[name]["isDir"], name
            if not api[name]["isDir"]:
                assert st.st_size == api[name]["size"], name
            assert errno_of(os.readlink, esc / sub / name) in (errno.EINVAL, errno.EPERM)
    # links that resolve to nothing in the view are not there at all
    for name in ("loop", "dangling", "shadow", "up-shadow", "chain1", "proc-shadow"):
        assert errno_of(os.stat, esc / "files" / name) == errno.ENOENT, name
        assert errno_of(read_limited, esc / "files" / name) == errno.ENOENT, name
    for name in ("proc-root", "proc-cwd"):
        assert errno_of(os.stat, esc / "dirs" / name) == errno.ENOENT, name
    # a link inside the sandbox reads as its target
    assert read_limited(esc / "files" / "to-real") == b"a real file\n"
    # links back up to an ancestor (the view's root, /home) are listed empty
    for name in ("hostroot", "way-up", "up"):
        assert os.path.isdir(esc / "dirs" / name), name
        assert os.listdir(esc / "dirs" / name) == [], name
    # /etc through a link is the sandbox's /etc, as the API lists it
    assert sorted(os.listdir(esc / "dirs" / "etc")) == \
        sorted(e["name"] for e in fenv.tb.listing("/etc"))
    assert "shadow" not in os.listdir(esc / "dirs" / "etc")
    # no way to make a link, a hard link or a special file through files/
    assert errno_of(os.symlink, "/etc/shadow", esc / "new-link") == errno.EPERM
    assert errno_of(os.link, esc / "files" / "real.txt", esc / "hard") == errno.EPERM
    assert errno_of(os.mkfifo, esc / "fifo") == errno.EPERM
    assert "new-link" not in os.listdir(esc) and "hard" not in os.listdir(esc)
    assert "fifo" not in os.listdir(esc)


@bounded(60)
def test_writes_through_links_stay_inside(fenv, canary):
    """Writing through a planted link never creates or changes a host file."""
    vp = plant(fenv, canary)
    esc = fenv.mount_path(vp)
    token_before = (fenv.qd.state_dir / "token").read_bytes()
    canary_before = canary.read_bytes()
    outside = canary.parent / "created-from-sandbox.txt"
    for name, data in (("canary-abs", b"overwritten\n"), ("canary-rel", b"overwritten\n"),
                       ("token-abs", b"x" * 64), ("token-rel", b"y" * 64)):
        try:
            with open(esc / "files" / name, "wb") as f:
                f.write(data)
        except OSError:
            pass
    for target in ("canary-dir/created-from-sandbox.txt", "hostroot/tmp/escape-probe.txt",
                   "way-up/escape-probe.txt", "state-abs/token", "state-rel/escape-probe.txt"):
        try:
            with open(esc / "dirs" / target, "wb") as f:
                f.write(b"probe\n")
        except OSError:
            pass
    assert (fenv.qd.state_dir / "token").read_bytes() == token_before
    assert canary.read_bytes() == canary_before
    assert not outside.exists()
    assert not os.path.exists("/tmp/escape-probe.txt")
    assert not os.path.exists("/escape-probe.txt")
    assert not (fenv.qd.state_dir / "escape-probe.txt").exists()


@bounded(120)
def test_api_never_leaks(fenv, canary):
    """The same links through quaverd's toolbox API directly."""
    vp = plant(fenv, canary)
    forbidden = secrets_of(fenv, canary)
    storage = fenv.storage / "home" / "daytona" / "esc"
    paths = [f"{vp}/files/{n}" for n in sorted(os.listdir(storage / "files"))]
    paths += [f"{vp}/dirs/{n}" for n in sorted(os.listdir(storage / "dirs"))]
    for d in ("up", "way-up", "hostroot", "proc-root", "nest/deep-up"):
        paths += [f"{vp}/dirs/{d}/etc/shadow", f"{vp}/dirs/{d}/token"]
    paths += [f"{vp}/dirs/state-abs/token", f"{vp}/dirs/state-rel/token",
              f"{vp}/dirs/canary-dir/canary.txt", "/../../../../etc/shadow",
              "/tmp/state-link/token", "/mnt/v/shadow", "/mnt/v/up/etc/shadow", "/mnt/v/token",
              "/mnt/v/canary", "/mnt/v/../evil/shadow", str(fenv.qd.state_dir / "token"),
              str(fenv.qd.state_dir / "organization"), str(canary)]
    for p in paths:
        for route in ("files/download", "files/info", "files"):
            status, raw, _ = fenv.tb.request("GET", route, path=p)
            for what, secret in forbidden.items():
                assert secret not in raw, f"GET {route}?path={p} returned the {what} ({status})"
    status, raw, _ = fenv.tb.request("POST", "files/bulk-download",
                                     body=json.dumps({"paths": paths}).encode(),
                                     headers={"Content-Type": "application/json"})
    for what, secret in forbidden.items():
        assert secret not in raw, f"bulk-download returned the {what} ({status})"
    # find and search walk the sandbox's own directories (not the host's /usr)
    for where in (HOME, "/tmp", "/mnt/v", "/etc", "/root"):
        for route, q in (("files/find", {"pattern": forbidden["canary"].decode()}),
                         ("files/find", {"pattern": "root:"}),
                         ("files/find", {"pattern": forbidden["token"].decode()[:16]}),
                         ("files/search", {"pattern": "*token*"})):
            status, raw, _ = fenv.tb.request("GET", route, timeout=60, path=where, **q)
            for what, secret in forbidden.items():
                assert secret not in raw, f"GET {route} {where} {q} returned the {what}"
            # a name found is the sandbox's own file: its content is no secret
            if route == "files/search" and status == 200:
                for name in json.loads(raw)["files"]:
                    st, body = fenv.tb.download_status(name)
                    for what, secret in forbidden.items():
                        assert secret not in body, f"{name} (found by search) holds the {what}"


@bounded(60)
def test_volume_subpath_climbing_out_refused(fenv):
    m = fenv.m
    m.expect_fs_log(r"(?i)subpath|volume|invalid|400")
    before = sorted(s["name"] for s in fenv.qd.list_sandboxes())
    for sub in ("../x", "sub/../../x", "..", "/etc", "./../x"):
        r = m.sh(f"echo 'create sandbox esc2 volume=vol:/mnt/w:{sub}' > control", check=False)
        assert r.returncode != 0, f"subpath {sub!r} was accepted"
        assert "Invalid argument" in r.stderr, r
        status, data = fenv.qd.request("POST", "/sandbox", json={
            "name": "esc3", "volumes": [{"volumeId": "vol", "mountPath": "/mnt/w",
                                         "subpath": sub}]})
        assert status == 400, (sub, status, data)
    assert sorted(s["name"] for s in fenv.qd.list_sandboxes()) == before
    data_parent = fenv.volume_data.parent
    assert not (data_parent / "x").exists()
    assert not (data_parent.parent / "x").exists()


@bounded(60)
def test_volume_subpath_through_symlink(fenv):
    """A subpath naming a symlink in the volume's data is never followed
    out: refused, or the mount shows no host directory."""
    m = fenv.m
    m.expect_fs_log(r"(?i)subpath|volume|symlink|invalid|400|error")
    fenv.qd.expect_log(r"(?i)subpath|symlink|volume")
    r = m.sh("echo 'create sandbox esc4 volume=vol:/mnt/e:evil' > control", check=False)
    if r.returncode != 0:
        assert fenv.qd.get("sandbox", "esc4") is None
        return
    env = FilesEnv(m, "esc4")
    listing = os.listdir(env.mount_path("/mnt/e"))
    assert "shadow" not in listing and "passwd" not in listing, listing
    r = run(["bash", "-c", "cat mnt/e/shadow mnt/e/passwd 2>/dev/null; true"], cwd=env.files)
    assert host_shadow_first_line() not in r.stdout.encode()
    m.sh("rmdir sandboxes/esc4")
