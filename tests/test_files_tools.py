"""The tools people run on a sandbox's files (issue 4 acceptance, "Tools"):
the same bash script runs in a local temp directory and in a directory of
sandboxes/fx/files/home/daytona on a real quaverfs mount, and what the
script prints must be identical (exit status, stdout and stderr).

Scripts get $SRC (a local source tree made once per module) and run in the
directory under test ($D, also the cwd); they print relative paths only.
"""

import hashlib
import os
import subprocess
import time

import pytest

from files_helpers import ATTR_TIMEOUT, bounded, files_session, make_root, run

# Fixed git identity and dates, so commit ids are the same in both places.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
}

# Lists a tree: type, mode, size and name of each entry, then the content sums.
TREE = r"""tree() {
	(cd "$1" && find . -mindepth 1 -printf '%y %m %s %P\n' | LC_ALL=C sort &&
	 find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}
"""


@pytest.fixture(scope="module")
def fenv(tmp_path_factory, request):
    yield from files_session(tmp_path_factory.mktemp("tools"), request)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """A small project tree on the local disk: text, binary, executable,
    empty, nested, names with spaces and UTF-8, an empty directory."""
    s = tmp_path_factory.mktemp("src") / "project"
    (s / "pkg" / "sub").mkdir(parents=True)
    (s / "docs").mkdir()
    (s / "empty-dir").mkdir()
    (s / "README.md").write_text("# project\nfoo is here\n")
    (s / "pkg" / "mod.py").write_text("def foo():\n    return 'foo'\n" * 20)
    (s / "pkg" / "sub" / "deep.txt").write_text("deep foo\nbar\n")
    (s / "docs" / "notes with spaces.txt").write_text("notes: foo bar baz\n")
    (s / "docs" / "résumé-ü.txt").write_text("unicode foo\n")
    (s / "empty.txt").write_bytes(b"")
    (s / "data.bin").write_bytes(os.urandom(700_000))
    run_sh = s / "run.sh"
    run_sh.write_text("#!/bin/sh\necho foo\n")
    run_sh.chmod(0o755)
    (s / "private.key").write_text("not really\n")
    (s / "private.key").chmod(0o600)
    old = 1_500_000_000
    for dirpath, dirnames, filenames in os.walk(s):
        for n in filenames + dirnames:
            os.utime(os.path.join(dirpath, n), (old, old))
    return s


@pytest.fixture
def places(fenv, tmp_path, request):
    """(local dir, files/ dir), fresh and empty, for this test."""
    name = request.node.originalname
    return (make_root("local", None, tmp_path, name).path,
            make_root("files", fenv, tmp_path, name).path)


def sh(script, where, src, timeout=60, extra_env=None):
    env = dict(os.environ)
    env.update(GIT_ENV)
    env.update({"D": str(where), "SRC": str(src), "LC_ALL": "C.UTF-8", "TZ": "UTC",
                "HOME": str(where)})
    env.update(extra_env or {})
    return run(["bash", "-euo", "pipefail", "-c", TREE + script], cwd=where, env=env,
               timeout=timeout)


def both(places, src, script, timeout=60):
    """Runs @script in both places; asserts success and identical output;
    returns the (local, files) results."""
    local, files = places
    a = sh(script, local, src, timeout)
    b = sh(script, files, src, timeout)
    assert a.returncode == 0, f"local run failed: {a!r}"
    assert b.returncode == 0, f"files/ run failed (local passed): {b!r}"
    assert b.stdout == a.stdout, f"stdout differs\nlocal:\n{a.stdout}\nfiles/:\n{b.stdout}"
    assert b.stderr == a.stderr, f"stderr differs\nlocal:\n{a.stderr}\nfiles/:\n{b.stderr}"
    return a, b


# ---- copying and archiving -------------------------------------------------------------

@bounded(120)
def test_cp_r(places, src):
    a, _ = both(places, src, """
        cp -r "$SRC" copy
        tree copy
        cp -r copy copy2          # a copy made on the same side
        diff -r copy copy2 && echo same
        cp -a "$SRC" archive      # -a: modes and times kept
        find archive -mindepth 1 -printf '%m %T@ %P\\n' | LC_ALL=C sort
    """)
    assert "run.sh" in a.stdout and "same" in a.stdout


@bounded(120)
def test_tar_x_and_c(places, src, tmp_path):
    tarball = tmp_path / "src.tar"
    subprocess.run(["tar", "cf", str(tarball), "-C", str(src), "."], check=True)
    both(places, src, f"""
        mkdir x
        tar xf '{tarball}' -C x
        tree x
        tar cf - -C x . | tar tvf - --numeric-owner --full-time | LC_ALL=C sort -k6
        mkdir back && tar cf - -C x . | tar xf - -C back
        diff -r x back && echo same
    """)
    # what tar c read back from files/ is the source itself
    out = places[0].parent / "back-check"
    out.mkdir()
    subprocess.run(f"tar cf - -C '{places[1]}/x' . | tar xf - -C '{out}'", shell=True, check=True)
    r = subprocess.run(["diff", "-r", str(src), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@bounded(120)
def test_rsync_a(places, src):
    both(places, src, """
        rsync -a "$SRC"/ r/
        find r -mindepth 1 -printf '%y %m %s %T@ %P\\n' | LC_ALL=C sort
        echo second run:
        rsync -ai "$SRC"/ r/          # nothing left to transfer
        echo changed:
        echo changed > "$SRC/../changed.txt"
        rsync -ai --out-format='%n' "$SRC/../changed.txt" r/
        rsync -ai "$SRC/../changed.txt" r/ ; rm "$SRC/../changed.txt"
        cat r/changed.txt
        echo back:
        rsync -a r/ back/ && diff -r r back && echo same
    """)


# ---- git ----------------------------------------------------------------------------

@bounded(170)
def test_git(places, src):
    a, b = both(places, src, """
        cp -r "$SRC" repo && cd repo
        git init -q -b main
        git add -A
        git commit -qm init
        git status --porcelain
        echo status1 $?
        git log --format='%H %s'
        git ls-files -s | LC_ALL=C sort -k4
        echo more >> README.md
        git status --porcelain
        git commit -qam second
        sed -i 's/foo/bar/' pkg/sub/deep.txt     # saved by rename
        git status --porcelain
        git commit -qam third
        git status --porcelain
        git log --format='%H %s'
        git fsck --no-progress 2>&1 | grep -v '^Checking' || true
    """)
    assert "status1 0" in a.stdout
    # No rehash churn. git rewrites its index when a tracked file's stat
    # data (ino, size, mtime, ctime) changed, or when an entry is racily
    # clean (as new as the index, to the second): so first let a second
    # pass and one `git status` settle that; then, past the attribute
    # timeout, `git status` is clean, fast and leaves the index alone.
    local, files = places
    for where in (local, files):
        repo = where / "repo"
        time.sleep(1.1)
        r = sh("git status --porcelain", repo, src)
        assert r.returncode == 0 and r.stdout == "", r
        before_index = index_state(repo)
        before_files = tracked_stat(repo, src)
        time.sleep(ATTR_TIMEOUT + 0.2)
        r = sh("git status --porcelain", repo, src)
        assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r
        assert r.elapsed < 3.0, f"git status took {r.elapsed:.2f} s in {where}"
        assert tracked_stat(repo, src) == before_files, f"stat data moved in {where}"
        assert index_state(repo) == before_index, \
            f"git status rewrote the index in {where}: stat data changed under it"
        r = sh("git diff --quiet && git diff --cached --quiet && echo clean", repo, src)
        assert r.stdout == "clean\n", r
    # every cache of the mount dropped: still clean and fast, and the files
    # written in place (not renamed here) keep their stat data, inode
    # numbers included (fs-layout.md: derived from the path)
    repo = files / "repo"
    in_place = {k: v for k, v in tracked_stat(repo, src).items() if k != "pkg/sub/deep.txt"}
    flush_mount(files)
    r = sh("git status --porcelain", repo, src)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r
    assert r.elapsed < 3.0, f"git status took {r.elapsed:.2f} s after a flush"
    after = tracked_stat(repo, src)
    assert {k: v for k, v in after.items() if k in in_place} == in_place


def index_state(repo):
    p = repo / ".git" / "index"
    st = os.stat(p)
    return (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())


def tracked_stat(repo, src):
    """{path: (ino, size, mtime_ns, ctime_ns, mode)} of the tracked files."""
    names = sh("git ls-files -z", repo, src).stdout.split("\0")
    out = {}
    for n in filter(None, names):
        st = os.lstat(repo / n)
        out[n] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
    return out


def flush_mount(path):
    """Writes `flush` to the control node of the mount holding @path."""
    p = os.path.abspath(path)
    while not os.path.exists(os.path.join(p, "control")) or \
            not os.path.isdir(os.path.join(p, "sandboxes")):
        parent = os.path.dirname(p)
        assert parent != p, f"no quaverfs root above {path}"
        p = parent
    with open(os.path.join(p, "control"), "w") as f:
        f.write("flush\n")


# ---- editing in place -------------------------------------------------------------------

VIM = "vim -es -u NONE -i NONE -N -n"


@bounded(120)
def test_vim_atomic_save(places, src):
    a, _ = both(places, src, f"""
        printf 'alpha foo\\nbeta\\nfoo gamma\\n' > v.txt
        chmod 640 v.txt
        # backupcopy=no: the original is renamed away and a new file written
        # (the editors' atomic save), then the backup removed
        {VIM} -c 'set backupcopy=no writebackup nobackup backupskip=' \\
            -c '%s/foo/bar/g' -c 'wq' v.txt
        cat v.txt; stat -c '%a %s %F' v.txt; ls -A
        # backupcopy=yes: written in place over the same file
        {VIM} -c 'set backupcopy=yes writebackup backupskip=' \\
            -c 'call append(line("$"), "delta")' -c 'wq' v.txt
        cat v.txt; stat -c '%a %s' v.txt; ls -A
        # with a swap file and a kept backup (v.txt~)
        vim -es -u NONE -i NONE -N -c 'set backup backupcopy=no backupskip=' -c '1d' -c 'wq' v.txt
        cat v.txt; ls -A; cat v.txt~
        # a new file
        {VIM} -c 'normal ihello' -c 'wq' new.txt
        cat new.txt; ls -A
    """)
    assert "alpha bar\nbeta\nbar gamma\n" in a.stdout


@bounded(60)
def test_sed_i(places, src):
    both(places, src, """
        printf 'one foo\\ntwo foo\\n' > s.txt
        chmod 600 s.txt
        sed -i 's/foo/baz/' s.txt
        cat s.txt; stat -c '%a %s' s.txt; ls -A
        sed -i.bak -e '1d' s.txt
        cat s.txt; cat s.txt.bak; ls -A
    """)


# ---- searching ---------------------------------------------------------------------------

@bounded(60)
def test_grep_r(places, src):
    a, _ = both(places, src, """
        cp -r "$SRC" g
        grep -rn foo g | LC_ALL=C sort
        grep -rl foo g | LC_ALL=C sort
        grep -rc foo g | LC_ALL=C sort
        grep -rL foo g | LC_ALL=C sort
        grep -r --include='*.py' -c 'return' g
        grep -rq nothing-like-this g || echo none
    """)
    assert "g/pkg/sub/deep.txt:1:deep foo" in a.stdout


@bounded(60)
def test_find_newer(places, src):
    a, _ = both(places, src, """
        mkdir -p n/sub
        echo a > n/a; echo b > n/b; echo s > n/sub/s
        sleep 1.1
        touch n/ref
        sleep 1.1
        echo c > n/c
        echo more >> n/a
        touch n/sub/s
        find n -newer n/ref | LC_ALL=C sort
        echo ---
        find n ! -newer n/ref -type f | LC_ALL=C sort
        find n -mmin -5 -type f | LC_ALL=C sort | wc -l
    """, timeout=60)
    assert "n/a\nn/c\n" in a.stdout


@bounded(60)
def test_du_s(places, src):
    both(places, src, """
        cp -r "$SRC" du
        du -sb du
        du -s --apparent-size -B1 du/data.bin du/empty.txt
        du -s du
        du -a du | LC_ALL=C sort -k2
    """)


# ---- glib (what file managers use) ------------------------------------------------------------

@bounded(60)
def test_gio_list_and_info(places, src):
    a, _ = both(places, src, """
        cp -r "$SRC" gio
        chmod 640 gio/README.md
        gio list -h -a standard::type,standard::size,unix::mode gio | LC_ALL=C sort
        gio list -l -h gio/pkg | LC_ALL=C sort
        attrs=standard::type,standard::name,standard::display-name,standard::size
        attrs=$attrs,standard::content-type,access::can-read,access::can-write
        attrs=$attrs,access::can-execute,access::can-delete,access::can-rename
        attrs=$attrs,unix::mode,unix::uid,unix::gid
        for f in gio/README.md gio/run.sh gio/data.bin "gio/docs/notes with spaces.txt"; do
            echo "== $f"
            gio info -a "$attrs,unix::nlink" "$f" | sed -n '/^attributes:/,$p'
        done
        # (a directory's link count is 2 on files/: fs-layout.md, Attributes)
        for f in gio/pkg gio/empty-dir; do
            echo "== $f"
            gio info -a "$attrs" "$f" | sed -n '/^attributes:/,$p'
        done
        gio info -f -a 'filesystem::readonly' gio | sed -n '/^attributes:/,$p'
        echo copy:
        gio copy gio/README.md gio/copied.md && cat gio/copied.md
        gio move gio/copied.md gio/moved.md && ls gio | LC_ALL=C sort
        gio remove gio/moved.md && ls gio/moved.md 2>&1 || true
    """)
    assert "standard::content-type: text/markdown" in a.stdout
    # fs-layout.md, Attributes: nlink 1, directories 2
    assert os.stat(places[1] / "gio" / "pkg").st_nlink == 2
    assert os.stat(places[1] / "gio" / "README.md").st_nlink == 1
