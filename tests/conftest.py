"""Fixtures shared by every pytest suite.

quaverd fixtures start the real binary (QUAVERD_BIN overrides
build/src/quaverd/quaverd) on a fresh state dir under the test's tmp_path.
When the test ends the daemon is stopped with SIGTERM (it must exit 0) and
its log is read: a line at level "error" or "warn" that the test did not
declare with q.expect_log(regex), any stderr output, or a daemon that died on
its own fails the test.
"""

import os

import pytest

from helpers.quaverd import Quaverd, quaverd_bin


def _require_binary():
    path = quaverd_bin()
    if not os.access(path, os.X_OK):
        pytest.fail(f"quaverd binary not found at {path}: run tools/build "
                    f"(or set QUAVERD_BIN)", pytrace=False)


class _Instances:
    """Every Quaverd a test (or module) started, for teardown and reports."""

    def __init__(self, base):
        self.base = base
        self.items = []

    def make(self, *args, start=True, **kw):
        _require_binary()
        name = kw.pop("name", f"quaverd{len(self.items)}" if self.items else "quaverd")
        base = kw.pop("base_dir", self.base / name)
        q = Quaverd(base, args=args, name=name, **kw)
        self.items.append(q)
        if start:
            q.start()
        return q

    def finish(self):
        problems = []
        for q in self.items:
            for p in q.finish():
                problems.append(f"[{q.name}] {p}")
        if problems:
            pytest.fail("quaverd problems at teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def make_quaverd(tmp_path, request):
    """make_quaverd("--clock-scale", "600", ...) -> a started Quaverd with a fresh
    state dir; make_quaverd(..., start=False) to start it yourself."""
    inst = _Instances(tmp_path)
    request.node._quaverd_instances = inst
    yield inst.make
    inst.finish()


@pytest.fixture
def quaverd(make_quaverd):
    """A quaverd with default options, for this test alone."""
    return make_quaverd()


@pytest.fixture(scope="module")
def make_module_quaverd(tmp_path_factory, request):
    """Like make_quaverd, for daemons that serve a whole test module."""
    inst = _Instances(tmp_path_factory.mktemp("module"))
    request.node._quaverd_instances = inst
    yield inst.make
    inst.finish()


@pytest.fixture(scope="module")
def shared_quaverd(make_module_quaverd):
    """One quaverd for a whole module of read-mostly tests (saves start-ups).
    Tests using it must not depend on what other tests created."""
    return make_module_quaverd(name="shared")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    # Show the daemons' last log lines next to the failure.
    holders = [item]
    if item.module is not None:
        holders.append(item.getparent(pytest.Module))
    for holder in holders:
        inst = getattr(holder, "_quaverd_instances", None)
        if inst is None:
            continue
        for q in inst.items:
            report.sections.append((f"{q.name} log (last lines)", q.log_tail(40)))
            err = q.read_stderr()
            if err:
                report.sections.append((f"{q.name} stderr", err[-4000:]))
