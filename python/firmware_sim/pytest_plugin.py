"""pytest plugin: the ``subsystem`` and ``subsystem_factory`` fixtures.

``subsystem`` boots one daemon per test (embedded default config, or the one
given by ``@pytest.mark.subsystem(config=TOML_TEXT, args=[...],
api_ca=PEM_FILE)``, keywords only) and stops it, removing its data directory,
when the test ends, also when it fails.
``subsystem_factory(config=None, args=(), api_ca=None)`` boots more (e.g. two daemons for
a session across subsystems); each is stopped and its directory removed when
the test ends, and a failed test's output shows every daemon's log. The binary: ``FIRMWARE_SIM_BIN``, else
``firmware-sim`` on ``PATH``.
"""

import shutil

import pytest

from .daemon import Subsystem


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "subsystem(config=None, args=(), api_ca=None): the firmware-sim subsystem "
        "the `subsystem` fixture boots",
    )


def _boot_args(args, where):
    """``args`` as a list of strings; a single string is a mistake (it would
    boot with one argument per character)."""
    if isinstance(args, (str, bytes)):
        raise pytest.UsageError(
            f"{where}: args must be a list of boot arguments, e.g. [\"--read-only\"], "
            f"not the string {args!r}")
    return [str(a) for a in args]


@pytest.fixture
def subsystem_factory(request, tmp_path_factory):
    booted = []

    def boot(config=None, args=(), api_ca=None):
        args = _boot_args(args, "subsystem_factory")
        workdir = tmp_path_factory.mktemp("firmware-sim")
        s = Subsystem(config=config, workdir=workdir, args=args, api_ca=api_ca)
        booted.append(s)
        return s

    yield boot
    rep = getattr(request.node, "rep_call", None)
    failed = rep is not None and rep.failed
    for s in reversed(booted):
        if failed:
            # pytest shows a failed test's captured output: every daemon's log.
            print(f"--- firmware-sim log ({s.log_path}) ---\n{s.log()}")
        s.close()
        # Volume files are sparse but large to `du --apparent-size`: never
        # leave them under pytest's base temp.
        shutil.rmtree(s.workdir, ignore_errors=True)


#: What ``@pytest.mark.subsystem(...)`` takes, all by keyword.
MARKER_KEYS = ("config", "args", "api_ca")


@pytest.fixture
def subsystem(request, subsystem_factory):
    marker = request.node.get_closest_marker("subsystem")
    kwargs = dict(marker.kwargs) if marker else {}
    # QA: a positional config or a misspelled keyword silently booted the
    # default subsystem.
    if marker is not None and marker.args:
        raise pytest.UsageError(
            "@pytest.mark.subsystem takes keywords only: "
            "subsystem(config=TOML_TEXT, args=[...], api_ca=PEM_FILE)")
    unknown = sorted(set(kwargs) - set(MARKER_KEYS))
    if unknown:
        raise pytest.UsageError(
            f"@pytest.mark.subsystem: unknown keyword {', '.join(unknown)} "
            f"(it takes {', '.join(MARKER_KEYS)})")
    yield subsystem_factory(config=kwargs.get("config"),
                            args=_boot_args(kwargs.get("args", ()), "@pytest.mark.subsystem"),
                            api_ca=kwargs.get("api_ca"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep
