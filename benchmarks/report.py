"""How every benchmark script hands its result over: ``--out FILE.json`` and ``--json`` (one JSON line, last)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_output_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="also write the JSON result to this file")
    parser.add_argument("--json", action="store_true", help="print one JSON line of results last")


def emit(result: dict, args: argparse.Namespace) -> None:
    """Write the result to --out (if given) and print it as the last line (with --json)."""
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result))
