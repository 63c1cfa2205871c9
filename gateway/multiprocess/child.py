"""Entry point of one serving process of ``modelgate serve --workers N``:
``python -m gateway.multiprocess.child --index I --count N --run-dir DIR --parent-pid P [--replacement]``.

It asks the kernel to SIGKILL it when the supervisor dies (first thing), reads the settings the
supervisor resolved, and runs a whole gateway on the shared ports until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.backends.worker.keeper import die_with_parent
from gateway.core.errors import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.multiprocess.child")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--replacement", action="store_true", help="load the models before listening")
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)

    from gateway.logs import configure_logging
    from gateway.multiprocess.role import WorkerRole
    from gateway.multiprocess.supervisor import read_settings
    from gateway.server import Gateway, run_until_signal

    try:
        settings = read_settings(args.run_dir)
        configure_logging(settings.log_level, settings.log_format)
        role = WorkerRole(args.index, args.count, args.run_dir, args.replacement)
        run_until_signal(Gateway(settings, worker=role, own_process=True))
    except (ConfigError, OSError) as exc:  # as `modelgate serve` reports them: one line, exit 2
        print(f"modelgate: error: worker {args.index}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
