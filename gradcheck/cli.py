"""``gradcheck`` command line: ``gradcheck sweep | check | teach | report``.

Each subcommand lives in its own module, which provides ``configure(parser)`` (its options) and
``run(args) -> int`` (the exit code). Such modules keep heavy imports (SymPy, matplotlib,
frameworks) inside ``run`` so that building the parser stays fast.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
import tempfile
from typing import NoReturn

#: subcommand -> (module, one-line help)
COMMANDS = {
    "sweep": ("gradcheck.sweep", "check the reference implementation over generated networks; write reports/"),
    "check": ("gradcheck.check_command", "check your own backprop code: TARGET is file.py:factory or module:factory"),
    "teach": ("gradcheck.teach.cli", "lessons on classic derivative bugs"),
    "report": ("gradcheck.report.cli", "re-render the HTML report from a saved gradcheck.json"),
}


#: options naming a folder a subcommand writes into: checked before any work
OUTPUT_FOLDERS = ("out", "report")


class UsageError(Exception):
    """Misuse of the command line: one line on stderr, exit code 2, no traceback."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``gradcheck sweep: error: ...``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def writable_folder(path: str) -> str | None:
    """Why ``path`` cannot take the files a subcommand writes (None when it can)."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as exc:
        return f"cannot write into {path!r}: {exc.strerror or exc}"
    return None


def build_parser() -> argparse.ArgumentParser:
    from gradcheck import __version__  # noqa: PLC0415

    parser = Parser(prog="gradcheck", description="Gradient verification for backprop code.")
    parser.add_argument("-V", "--version", action="version", version=f"gradcheck {__version__}")
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
    args, extra = parser.parse_known_args(argv)
    if not getattr(args, "command", None):
        if extra:
            close = difflib.get_close_matches(extra[0], list(COMMANDS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (commands: {', '.join(COMMANDS)})"
            parser.error(f"unknown command {extra[0]!r}{hint}")
        parser.print_help()
        return 2
    prog = f"gradcheck {args.command}"
    if extra:  # named by the subcommand, not by the top-level usage
        print(f"{prog}: error: unrecognized arguments: {' '.join(extra)}", file=sys.stderr)
        return 2
    if getattr(args, "_missing", None):
        print(f"{prog}: not available ({args._missing})", file=sys.stderr)
        return 2
    for option in OUTPUT_FOLDERS:
        folder = getattr(args, option, None)
        if isinstance(folder, str) and not getattr(args, "no_report", False):
            why = writable_folder(folder)
            if why:
                print(f"{prog}: error: --{option} {why}", file=sys.stderr)
                return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `gradcheck teach 3 | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
