"""`knowcoder`: one command with a subcommand per phase.

Each phase's `cli.py` exposes `add_commands(subparsers)` and imports nothing heavy at module level (fast --help).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules (under knowcoder_ray) that register subcommands, in `knowcoder --help` order; a phase adds its own.
COMMAND_MODULES = ["codec.cli", "data.cli", "train.cli", "schema.cli", "serve.cli", "eval.cli", "api"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knowcoder", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"knowcoder_ray.{name}").add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from knowcoder_ray.settings import ConfigError, UsageError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as e:  # a handler's: named with its subcommand (`knowcoder model tiny: ...`)
        command = [args.command, *(v for k, v in vars(args).items() if k.endswith("_command"))]
        print(f"knowcoder {' '.join(command)}: {e}", file=sys.stderr)
    # a bad config or --set (its lines name the keys), a path that is not there, a cluster that does not answer,
    # a file that is not UTF-8 text (storage.read_text's message names it): a message, no traceback
    except (ConfigError, ConnectionError, FileExistsError, FileNotFoundError, IsADirectoryError,
            NotADirectoryError, UnicodeDecodeError) as e:
        print(f"knowcoder {args.command}: {_message(e)}", file=sys.stderr)
    return 2


def _message(e: Exception) -> str:
    if isinstance(e, OSError) and e.filename:  # "[Errno 2] No such file or directory: '/x'" without the errno
        return f"{e.strerror}: {e.filename}"
    text = str(e)
    return f"not found: {text}" if isinstance(e, FileNotFoundError) and " " not in text else text  # pyarrow: a bare path


if __name__ == "__main__":
    sys.exit(main())
