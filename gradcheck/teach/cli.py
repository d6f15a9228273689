"""``gradcheck teach``: lessons on classic derivative bugs (being written)."""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="the lesson to run")


def run(args: argparse.Namespace) -> int:
    print("gradcheck teach: lessons are being written")
    return 2
