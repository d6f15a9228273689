"""``gradcheck report JSON_FILE [--out DIR]``: re-render the HTML (and JUnit XML) from a saved
``gradcheck.json``, keeping its title, meta and the environment it was produced in.

``gradcheck report merge A.json B.json ... --out DIR``: the reports of a sweep's shards
(``gradcheck sweep --shard I/N``) as one report (:mod:`gradcheck.report.merge`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("json_file", metavar="JSON_FILE", nargs="+",
                        help="a gradcheck.json written by a sweep, the pytest plugin or gradcheck.report.write; "
                             "or merge A.json B.json ...: the shards of one sweep (gradcheck sweep --shard I/N) "
                             "as one report in --out")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="folder for index.html, gradcheck.json and junit.xml (default: JSON_FILE's folder; "
                             "junit.xml of a pytest session's report only if it had one)")
    parser.add_argument("--title", default=None, help="replace the report title")
    parser.add_argument("--allow-missing", action="store_true",
                        help="merge: write the report even when some shards' files are missing (a warning)")
    parser.usage = ("%(prog)s [-h] [--out DIR] [--title TITLE] JSON_FILE\n"
                    "       %(prog)s merge A.json B.json ... --out DIR [--allow-missing] [--title TITLE]")
    parser.epilog = ("merge: the gradcheck.json of every shard of one sweep (gradcheck sweep --shard I/N); "
                     "refuses mixed seeds, gradcheck versions or sweep configs, duplicate records and "
                     "missing shards (exit 2); writes index.html, gradcheck.json and junit.xml into --out")


def run(args: argparse.Namespace) -> int:
    from gradcheck.report import JUNIT_NAME, _write, load  # noqa: PLC0415

    files = list(args.json_file)
    if files[0] == "merge":
        return run_merge(files[1:], args)
    if len(files) > 1:
        print(f"gradcheck report: error: one JSON_FILE, got {len(files)}; to join several use "
              "gradcheck report merge A.json B.json ... --out DIR", file=sys.stderr)
        return 2
    json_file = files[0]
    try:
        saved = load(json_file)
    except (OSError, ValueError) as exc:
        print(f"gradcheck report: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(json_file).parent
    # a pytest session's report has its JUnit in pytest's --junitxml unless --gradcheck-junit asked for
    # one: re-rendering writes junit.xml only when the saved report had it
    junit = saved.meta.get("source") != "pytest" or (Path(json_file).parent / JUNIT_NAME).exists()
    path = _write(saved.results, out, title=args.title or saved.title, meta=saved.meta,
                  environment=saved.environment or None, junit=junit)
    failed = sum(not r.get("passed") for r in saved.results)
    print(f"{path} ({len(saved.results)} checks, {failed} failed)")
    return 0


def run_merge(files: list[str], args: argparse.Namespace) -> int:
    """``gradcheck report merge A.json B.json ... --out DIR``: exit 2 on a refusal (one line on stderr)."""
    from gradcheck.report.merge import MergeError, merge, write_merged  # noqa: PLC0415

    if not files:
        print("gradcheck report merge: error: give the gradcheck.json of every shard: "
              "gradcheck report merge A.json B.json ... --out DIR", file=sys.stderr)
        return 2
    if not args.out:
        print("gradcheck report merge: error: --out DIR is required (the folder for the merged report)",
              file=sys.stderr)
        return 2
    try:
        merged = merge(files, allow_missing=args.allow_missing)
    except MergeError as exc:
        print(f"gradcheck report merge: error: {exc}", file=sys.stderr)
        return 2
    for warning in merged.warnings:
        print(f"gradcheck report merge: warning: {warning}", file=sys.stderr)
    if args.title:
        merged.title = args.title
    path = write_merged(merged, args.out)
    failed = sum(not r.get("passed") for r in merged.results)
    print(f"{path} ({len(merged.results)} checks from {len(files)} reports, {failed} failed)")
    return 0
