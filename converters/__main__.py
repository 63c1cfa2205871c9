"""``python -m converters MODEL_FILE --name NAME --to ...`` (and ``python -m converters verify VERSION_DIR
--source FILE``): the convert and verify commands without the gateway CLI."""

from __future__ import annotations

import argparse
import sys

from converters.cli import add_arguments, add_verify_arguments, main, verify_main


def entry(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the conversion (or, with ``verify`` first, the re-verification)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["verify"]:
        checker = argparse.ArgumentParser(prog="python -m converters verify", description="Re-verify a version.")
        add_verify_arguments(checker)
        return verify_main(checker.parse_args(argv[1:]))
    parser = argparse.ArgumentParser(prog="python -m converters", description="Convert, verify and publish a model.")
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(entry())
