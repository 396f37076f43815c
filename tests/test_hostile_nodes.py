"""Hostile writes to every writable control node of a real mount (issue 7,
"Hostile input"): empty writes, 1 MiB writes, binary junk, NUL bytes, a word
split across write() calls, numbers out of range, negative numbers,
unicode. Each bad write fails with EINVAL (fs-layout.md: "A write carries
one command"), leaves its reason in the root `error` node (and the object's
own), and changes nothing: the backend, listed through its HTTP API, and
the node read back are the same before and after. quaverfs keeps serving.
test_fs_errors.py has the single wrong words; this suite has the junk."""

import errno
import os
import re

import pytest

from fsmount import *  # noqa: F401,F403

MiB = 1 << 20
BOX = "hn"

# Bytes no node takes, whatever its grammar.
JUNK = {
    "newline_only": [b"\n"],
    "spaces_only": [b"   \t \n"],
    "one_mib": [b"a" * MiB],
    "one_mib_of_words": [b"stop " * (MiB // 5)],
    "one_mib_of_newlines": [b"\n" * MiB],
    "binary": [bytes(range(256)) * 4],
    "nul_alone": [b"\0"],
    "nul_inside": [b"st\0op\n"],
    "nul_after": [b"stop\0\n"],
    "bad_utf8": [b"\xff\xfe\xc3\n"],
    "unicode_lookalike": ["ｓｔｏｐ\n".encode()],
    "unicode_math": ["𝓈𝓉𝑜𝓅\n".encode()],
    "rtl_override": ["\u202estop\n".encode()],
    "zero_width": ["st\u200bop\n".encode()],
    "two_commands": [b"stop\nstart\n"],
    "split_word": [b"st", b"op\n"],
    "split_three": [b"s", b"t", b"op"],
    "escape_sequences": [b"\x1b[2J\x1b]0;owned\x07\n"],
}

# Numbers the interval nodes refuse (fs-layout.md: whole minutes, autostop
# from 0, autodelete from -1).
BAD_NUMBERS = ["99999999999999999999999", "2147483648", "-2147483649", "9223372036854775808",
               "-9223372036854775809", "1e3", "0x10", "010x", "+", "-", "--5", "5 5", "5\n6",
               "\u0665", "５", "NaN", "inf", "-inf", "1.0", " ", "5m", "0b1"]
NEGATIVE = {"autostop": ["-1", "-5", "-2147483648"], "autoarchive": ["-1", "-60"],
            "autodelete": ["-2", "-100", "-2147483648"]}


def write_pieces(path, pieces):
    """Opens @path as `echo >` does and writes each piece with its own
    write(); returns the first errno (0 when every write and the close
    succeeded)."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    first = 0
    try:
        for piece in pieces:
            try:
                os.write(fd, piece)
            except OSError as e:
                first = first or e.errno
    finally:
        try:
            os.close(fd)
        except OSError as e:
            first = first or e.errno
    return first


@pytest.fixture(scope="module")
def hm(tmp_path_factory, request):
    def setup(m):
        m.sh(f"mkdir sandboxes/{BOX}")
        call(write_node, m.path(f"sandboxes/{BOX}/labels/keep"), "kept\n", True)
    yield from mount_session(tmp_path_factory.mktemp("hostile-nodes"), request, setup)


def snapshot_state(m):
    """What must not change: the backend as the API shows it, and the nodes."""
    nodes = ["defaults", f"sandboxes/{BOX}/state", f"sandboxes/{BOX}/autostop",
             f"sandboxes/{BOX}/autoarchive", f"sandboxes/{BOX}/autodelete",
             f"sandboxes/{BOX}/snapshot", f"sandboxes/{BOX}/labels/keep"]
    return m.qd.view(), {n: m.read(n) for n in nodes}, m.listdir(f"sandboxes/{BOX}/labels"), \
        m.listdir("sandboxes")


def refused(m, rel, pieces, want=errno.EINVAL, obj_error=None):
    """@pieces written to @rel fail with @want, the reason is in the error
    nodes and the log, and nothing changed."""
    before = snapshot_state(m)
    mark = m.log_mark()
    # a lambda: a Hang names it, not the 1 MiB it carries
    got = call(lambda: write_pieces(m.path(rel), pieces))
    assert got == want, f"{rel} <- {pieces[0][:40]!r}...: expected " \
        f"{errno.errorcode.get(want)}, got {errno.errorcode.get(got, got)}"
    root = m.read("error")
    assert root.endswith("\n") and ": " in root, f"root error node: {root!r}"
    msg = root.rstrip("\n").split(": ", 1)[1].strip()
    assert msg, f"no message in the root error node: {root!r}"
    # A message is one line of text, however hostile the input: no NUL, no
    # escape sequence, bounded.
    assert "\0" not in root and "\x1b" not in root and len(root) < 4096, repr(root[:200])
    if obj_error:
        own = m.read(obj_error)
        assert own.strip(), f"{obj_error} is empty after a refused write"
        assert "\x1b" not in own and len(own) < 4096
    # every piece of a split write is its own refused command, each logged
    m.expect_fs_log(r"warn: " + re.escape(rel + ": "))
    assert msg[:60] in m.log_since(mark), f"reason {msg!r} not logged"
    assert snapshot_state(m) == before, "a refused write changed something"


SANDBOX_NODES = ["state", "autostop", "autoarchive", "autodelete", "snapshot"]


@pytest.mark.parametrize("junk", sorted(JUNK))
@pytest.mark.parametrize("node", SANDBOX_NODES)
def test_junk_to_sandbox_nodes(hm, node, junk):
    pieces = JUNK[junk]
    if node == "snapshot" and junk.startswith("split_"):
        # "st" and "op" are valid snapshot names: split a bad one instead
        pieces = [b"-sn", b"ap shot\n"]
    refused(hm, f"sandboxes/{BOX}/{node}", pieces, obj_error=f"sandboxes/{BOX}/error")


@pytest.mark.parametrize("junk", sorted(JUNK))
@pytest.mark.parametrize("node", ["defaults", "control"])
def test_junk_to_root_nodes(hm, node, junk):
    refused(hm, node, JUNK[junk])


@pytest.mark.parametrize("node", ["autostop", "autoarchive", "autodelete"])
def test_numbers_out_of_range_and_malformed(hm, node):
    for value in BAD_NUMBERS + NEGATIVE[node]:
        refused(hm, f"sandboxes/{BOX}/{node}", [(value + "\n").encode()],
                obj_error=f"sandboxes/{BOX}/error")


@pytest.mark.parametrize("word", ["cpu=-1", "cpu=0", "memory=-4", "disk=99999999999999999999",
                                  "gpu=-1", "autostop=-1", "autoarchive=-1", "autodelete=-2",
                                  "cpu=1.5", "cpu=\u0662", "autostop=2147483648",
                                  "public=\u0442rue", "language=pyth\u043en",
                                  "\u043babel=k=v", "env=\0=1", "label==v", "env==v"])
def test_bad_creation_options(hm, word):
    refused(hm, "defaults", [(word + "\n").encode()])
    refused(hm, "control", [(f"create sandbox hz {word}\n").encode()])


def test_empty_write_changes_nothing(hm):
    """write(fd, "", 0) on a control node: the kernel hands FUSE nothing, so
    the call succeeds and no command runs."""
    m = hm
    before = snapshot_state(m)
    for rel in ["defaults", "control", f"sandboxes/{BOX}/state", f"sandboxes/{BOX}/autostop",
                f"sandboxes/{BOX}/snapshot", f"sandboxes/{BOX}/labels/keep"]:
        assert call(write_pieces, m.path(rel), [b""]) == 0, rel
    assert snapshot_state(m) == before


@pytest.mark.parametrize("junk", ["one_mib", "one_mib_of_newlines", "binary", "nul_alone",
                                  "nul_inside", "nul_after", "two_commands",
                                  "escape_sequences"])
def test_junk_label_values(hm, junk):
    """A label's value is one line of text: junk is EINVAL and the label
    keeps its value (fs-layout.md, labels/)."""
    # 1 MiB is over the backend's body limit: its 413 is EFBIG (fs-layout.md)
    want = errno.EFBIG if junk == "one_mib" else errno.EINVAL
    refused(hm, f"sandboxes/{BOX}/labels/keep", JUNK[junk], want=want,
            obj_error=f"sandboxes/{BOX}/error")
    assert hm.read(f"sandboxes/{BOX}/labels/keep") == "kept\n"


def test_unicode_label_value_is_data(hm):
    """Unicode is a fine value for a label (it is data, not a command): it is
    kept byte for byte, through the backend."""
    m = hm
    value = "caf\u00e9 \u2603 \U0001f600 \u202eright-to-left"
    call(write_node, m.path(f"sandboxes/{BOX}/labels/uni"), value + "\n", True)
    assert m.read(f"sandboxes/{BOX}/labels/uni") == value + "\n"
    assert m.qd.get("sandbox", BOX)["labels"]["uni"] == value
    os.unlink(m.path(f"sandboxes/{BOX}/labels/uni"))


@pytest.mark.parametrize("key", ["a" * 256, "a" * 1000, "k\nnew", "\x1b[2J", ".", ".."])
def test_bad_label_keys(hm, key):
    """Label names no file can have never reach the backend."""
    m = hm
    before = snapshot_state(m)
    got = errno_of(write_node, os.path.join(str(m.path(f"sandboxes/{BOX}/labels")), key),
                   "v\n", True)
    assert got in (errno.EINVAL, errno.ENAMETOOLONG, errno.EISDIR, errno.EEXIST,
                   errno.ENOENT, errno.EPERM), errno.errorcode.get(got, got)
    if got == errno.EINVAL:
        m.expect_fs_log(r"label")
    assert snapshot_state(m) == before


def test_mount_still_serves_after_the_junk(hm):
    """After every refused write: the sandbox answers, a good write works."""
    m = hm
    assert m.read(f"sandboxes/{BOX}/state") == "started\n"
    m.write(f"sandboxes/{BOX}/autostop", "17\n")
    assert m.read(f"sandboxes/{BOX}/autostop") == "17\n"
    assert m.qd.get("sandbox", BOX)["autoStopInterval"] == 17
    assert m.proc.poll() is None
