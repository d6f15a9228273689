"""``gradcheck report JSON_FILE [--out DIR]``: re-render the HTML (and JUnit XML) from a saved
``gradcheck.json``, keeping its title, meta and the environment it was produced in."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("json_file", metavar="JSON_FILE", help="a gradcheck.json written by a sweep, "
                        "the pytest plugin or gradcheck.report.write")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="folder for index.html, gradcheck.json and junit.xml (default: JSON_FILE's folder; "
                             "junit.xml of a pytest session's report only if it had one)")
    parser.add_argument("--title", default=None, help="replace the report title")


def run(args: argparse.Namespace) -> int:
    from gradcheck.report import JUNIT_NAME, _write, load  # noqa: PLC0415

    try:
        saved = load(args.json_file)
    except (OSError, ValueError) as exc:
        print(f"gradcheck report: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.json_file).parent
    # a pytest session's report has its JUnit in pytest's --junitxml unless --gradcheck-junit asked for
    # one: re-rendering writes junit.xml only when the saved report had it
    junit = saved.meta.get("source") != "pytest" or (Path(args.json_file).parent / JUNIT_NAME).exists()
    path = _write(saved.results, out, title=args.title or saved.title, meta=saved.meta,
                  environment=saved.environment or None, junit=junit)
    failed = sum(not r.get("passed") for r in saved.results)
    print(f"{path} ({len(saved.results)} checks, {failed} failed)")
    return 0
