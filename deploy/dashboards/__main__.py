"""Write (or with --check, verify) deploy/dashboards/<uid>.json from the specs in definitions.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy.dashboards.definitions import DASHBOARDS
from deploy.dashboards.render import to_json

OUT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.dashboards", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder for the JSON files (default: {OUT})")
    parser.add_argument("--check", action="store_true", help="exit 1 if a file differs from what would be written")
    args = parser.parse_args(argv)
    stale = []
    for spec in DASHBOARDS:
        path = args.out / f"{spec.uid}.json"
        text = to_json(spec)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
            continue
        path.write_text(text, encoding="utf-8")
        print(path)
    for path in stale:
        print(f"{path} is stale: run python -m deploy.dashboards", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
