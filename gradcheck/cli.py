"""``gradcheck`` command line: ``gradcheck sweep | check | teach | report``.

Each subcommand lives in its own module, which provides ``configure(parser)`` (its options) and
``run(args) -> int`` (the exit code). Such modules keep heavy imports (SymPy, matplotlib,
frameworks) inside ``run`` so that building the parser stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module, one-line help)
COMMANDS = {
    "sweep": ("gradcheck.sweep", "check the reference implementation over generated networks; write reports/"),
    "check": ("gradcheck.check_command", "check your own backprop code: TARGET is file.py:factory or module:factory"),
    "teach": ("gradcheck.teach.cli", "lessons on classic derivative bugs"),
    "report": ("gradcheck.report.cli", "re-render the HTML report from a saved gradcheck.json"),
}


def build_parser() -> argparse.ArgumentParser:
    from gradcheck import __version__  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="gradcheck", description="Gradient verification for backprop code.")
    parser.add_argument("--version", action="version", version=f"gradcheck {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        try:
            importlib.import_module(module).configure(p)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            p.set_defaults(_missing=str(exc))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if getattr(args, "_missing", None):
        print(f"gradcheck {args.command}: not available ({args._missing})", file=sys.stderr)
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
