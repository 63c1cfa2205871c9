"""``python -m converters MODEL_FILE --name NAME --to ...``: the convert command without the gateway CLI."""

from __future__ import annotations

import argparse

from converters.cli import add_arguments, main


def entry(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the conversion."""
    parser = argparse.ArgumentParser(prog="python -m converters", description="Convert, verify and publish a model.")
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(entry())
