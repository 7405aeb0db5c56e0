#!/usr/bin/env python3
"""Run CPython's own Lib/test/test_signal.py against ``aiosig.core``: the drop-in's measure.

The interpreter's test_signal.py (and signalinterproctester.py, which one test runs as a
script from the same directory) is copied twice into a temporary directory: once unmodified,
the reference, and once with every ``import signal`` rewritten to
``import aiosig.core as signal`` -- including inside the code snippets, held in strings, that
the tests run in child interpreters. Both copies run under unittest, one after the other (the
stress tests measure timer resolution, so they are not run side by side), and the outcomes
are compared test by test: every test that passes against the stdlib must pass against
aiosig.core, except those listed in EXCLUDED.

The child interpreters run in isolated mode (``-I``), which ignores PYTHONPATH: aiosig must be
installed from this checkout (``pip install -e .``); the script checks that first.

Usage: python scripts/run_stdlib_signal_tests.py [-v] [-k SUBSTRING]

The last line printed is ``stdlib-signal: N passed, N failed, N skipped`` for the aiosig.core
run (excluded tests count as skipped); the exit status is 1 if any test regressed, 2 if the
run could not be set up.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FILES = ("test_signal.py", "signalinterproctester.py")

# Tests that cannot pass against any module other than `signal` itself, by design.
EXCLUDED = {
    # Asserts that every Python-level function of the module has __module__ == "signal"
    # (bpo-27718, for pydoc). aiosig.core's own signal/getsignal/set_wakeup_fd are not the
    # signal module's functions and say so: their __module__ is "aiosig.core".
    "GenericTests.test_functions_module_attr": "checks __module__ == 'signal'",
}

# `import a, signal as s, b`, or `from signal import x`: one import statement (or the part of
# one up to a ';' or a line end), also when it sits inside a string holding child code.
_NAME = r"[\w.]+(?:[ \t]+as[ \t]+\w+)?"
_IMPORT = re.compile(
    rf"(?P<from>\bfrom[ \t]+(?P<module>[\w.]+)[ \t]+)?\bimport[ \t]+"
    rf"(?P<names>{_NAME}(?:[ \t]*,[ \t]*{_NAME})*)"
)
_SIGNAL_ITEM = re.compile(r"signal(?P<alias>[ \t]+as[ \t]+\w+)?")

TIMEOUT = 900  # seconds for one whole run; the stdlib's file takes well under a minute


def _rewrite_one(match: re.Match[str]) -> str:
    if match["from"]:
        if match["module"] != "signal":
            return match[0]
        return match[0].replace(match["from"], match["from"].replace("signal", "aiosig.core"), 1)
    items = [item.strip() for item in match["names"].split(",")]
    for i, item in enumerate(items):
        found = _SIGNAL_ITEM.fullmatch(item)
        if found:
            items[i] = "aiosig.core" + (found["alias"] or " as signal")
    return "import " + ", ".join(items)


def _imports_stdlib_signal(match: re.Match[str]) -> bool:
    if match["from"]:
        return match["module"] == "signal"
    return any(_SIGNAL_ITEM.fullmatch(i.strip()) for i in match["names"].split(","))


def rewrite(source: str) -> tuple[str, int]:
    """Return `source` with every import of `signal` importing aiosig.core, and the count."""
    count = sum(_imports_stdlib_signal(m) for m in _IMPORT.finditer(source))
    rewritten = _IMPORT.sub(_rewrite_one, source)
    left = [m[0] for m in _IMPORT.finditer(rewritten) if _imports_stdlib_signal(m)]
    if left:
        raise SystemExit(f"error: imports of signal left after rewriting: {left}")
    return rewritten, count


# Runs in a child interpreter: one unittest run of test_signal.py from a directory, writing
# {"Class.test": outcome} as JSON. Outcomes: passed, failed, skipped.
DRIVER = textwrap.dedent(
    """
    import json, sys, unittest

    directory, out, verbosity, pattern, *excluded = sys.argv[1:]
    sys.path.insert(0, directory)
    import test_signal as module

    for test_id in excluded:
        cls_name, method = test_id.split(".")
        cls = getattr(module, cls_name)
        reason = "excluded by run_stdlib_signal_tests.py"
        setattr(cls, method, unittest.skip(reason)(getattr(cls, method)))

    outcomes = {}

    def short(test):
        return test.id().removeprefix("test_signal.")

    class Recorder(unittest.TextTestResult):
        def addSuccess(self, test):
            super().addSuccess(test)
            outcomes.setdefault(short(test), "passed")

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            outcomes.setdefault(short(test), "passed")

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            outcomes.setdefault(short(test), "skipped")

        def addFailure(self, test, err):
            super().addFailure(test, err)
            outcomes[short(test)] = "failed"

        def addError(self, test, err):
            super().addError(test, err)
            outcomes[short(test)] = "failed"

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            outcomes[short(test)] = "failed"

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is not None:
                outcomes[short(test)] = "failed"

    loader = unittest.TestLoader()
    if pattern:
        loader.testNamePatterns = [f"*{pattern}*"]
    suite = loader.loadTestsFromModule(module)
    runner = unittest.TextTestRunner(verbosity=int(verbosity), resultclass=Recorder)
    runner.run(suite)
    with open(out, "w") as f:
        json.dump(outcomes, f)
    """
)


def check_installed() -> None:
    """Isolated children must import this checkout's aiosig, so it must be installed."""
    probe = subprocess.run(
        [sys.executable, "-I", "-c", "import aiosig.core, sys; print(aiosig.core.__file__)"],
        capture_output=True,
        text=True,
    )
    expected = ROOT / "aiosig" / "core.py"
    if probe.returncode != 0 or Path(probe.stdout.strip()).resolve() != expected:
        found = probe.stdout.strip() or probe.stderr.strip().splitlines()[-1:]
        raise SystemExit(
            f"error: child interpreters run with -I (no PYTHONPATH) and import aiosig.core "
            f"from {found or 'nowhere'}, not {expected}: run `pip install -e {ROOT}` first."
        )


def prepare(tmp: Path) -> tuple[Path, Path]:
    """Copy the stdlib's test files into tmp/reference and tmp/aiosig (rewritten)."""
    spec = importlib.util.find_spec("test")
    if spec is None or spec.origin is None:
        raise SystemExit("error: this Python has no test package (Lib/test) to take them from")
    source_dir = Path(spec.origin).parent
    reference, drop_in = tmp / "reference", tmp / "aiosig"
    reference.mkdir()
    drop_in.mkdir()
    total = 0
    for name in FILES:
        shutil.copyfile(source_dir / name, reference / name)
        text, count = rewrite((source_dir / name).read_text())
        compile(text, str(drop_in / name), "exec")
        (drop_in / name).write_text(text)
        total += count
    print(f"test files: {source_dir}; {total} imports of signal rewritten")
    if total == 0:
        raise SystemExit("error: found no import of signal to rewrite")
    return reference, drop_in


def run(
    directory: Path, label: str, args: argparse.Namespace, excluded: list[str]
) -> dict[str, str]:
    """Run the test_signal.py in `directory` in a child interpreter; return outcomes by test."""
    out = directory / "outcomes.json"
    log = directory / "unittest.log"
    print(f"running {label} ...", flush=True)
    command = [
        sys.executable,
        str(directory.parent / "driver.py"),
        str(directory),
        str(out),
        "2" if args.verbose else "1",
        args.k or "",
        *excluded,
    ]
    with open(log, "w") as log_file:
        try:
            subprocess.run(
                command,
                cwd=directory,
                stdout=None if args.verbose else log_file,
                stderr=subprocess.STDOUT if not args.verbose else None,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            print(f"error: the {label} run did not finish in {TIMEOUT} s")
    if not out.exists():
        print(f"error: the {label} run wrote no results; its output:\n{log.read_text()}")
        return {}
    outcomes: dict[str, str] = json.loads(out.read_text())
    return outcomes


def counts(outcomes: dict[str, str]) -> str:
    """``N passed, N failed, N skipped``."""
    n = {k: sum(v == k for v in outcomes.values()) for k in ("passed", "failed", "skipped")}
    return f"{n['passed']} passed, {n['failed']} failed, {n['skipped']} skipped"


def regressions(reference: dict[str, str], drop_in: dict[str, str]) -> list[str]:
    """Tests that pass against the stdlib but not against aiosig.core (exclusions aside)."""
    return sorted(
        t
        for t, outcome in reference.items()
        if outcome == "passed" and t not in EXCLUDED and drop_in.get(t) != "passed"
    )


def rerun(
    regressed: list[str], drop_in_dir: Path, args: argparse.Namespace
) -> tuple[list[str], list[str]]:
    """Re-run each regressed test alone: return (still regressed, flaky)."""
    # Timing-sensitive stress tests fail now and then on a loaded machine, against the stdlib
    # too: a regression must fail again, alone, to count.
    print(f"re-running {len(regressed)} test(s) that failed against aiosig.core ...")
    again: dict[str, str] = {}
    for test_id in regressed:
        args.k = test_id.split(".")[1]
        again.update(run(drop_in_dir, f"aiosig.core, {test_id}", args, sorted(EXCLUDED)))
    flaky = [t for t in regressed if again.get(t) == "passed"]
    return [t for t in regressed if t not in flaky], flaky


def report(
    reference: dict[str, str], drop_in: dict[str, str], regressed: list[str], flaky: list[str]
) -> None:
    """Print exclusions, flaky tests, regressions, then the two count lines (ours last)."""
    for test_id, reason in sorted(EXCLUDED.items()):
        print(f"excluded: {test_id} ({reason}); stdlib: {reference.get(test_id, 'not run')}")
    for test_id in flaky:
        print(f"flaky: {test_id} failed against aiosig.core, then passed when re-run alone")
    for test_id in regressed:
        got = drop_in.get(test_id, "not run")
        print(f"REGRESSION: {test_id}: stdlib passed, aiosig.core {got}")
    if reference:
        print(f"reference run (import signal): {counts(reference)}")
    print(f"stdlib-signal: {counts(drop_in)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="stream unittest output")
    parser.add_argument("-k", help="only run tests whose name contains this substring")
    args = parser.parse_args()
    check_installed()
    with tempfile.TemporaryDirectory(prefix="aiosig-stdlib-signal-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "driver.py").write_text(DRIVER)
        reference_dir, drop_in_dir = prepare(tmp)
        reference = run(reference_dir, "the stdlib's signal (reference)", args, [])
        drop_in = run(drop_in_dir, "aiosig.core", args, sorted(EXCLUDED))
        regressed = regressions(reference, drop_in)
        flaky: list[str] = []
        if regressed and drop_in:
            regressed, flaky = rerun(regressed, drop_in_dir, args)
            drop_in.update(dict.fromkeys(flaky, "passed"))
    report(reference, drop_in, regressed, flaky)
    if not reference or not drop_in:
        return 2
    return 1 if regressed else 0


if __name__ == "__main__":
    sys.exit(main())
