"""``modelgate convert``: one command from a trained model to verified, published versions.

``register(subparsers)`` is what ``gateway/cli.py`` mounts; ``python -m converters``
runs the same command stand-alone (``python -m converters verify ...`` the verify command).
Exit codes: 0 all requested targets passed and were published, 1 some failed (the others
were published), 2 bad input (nothing written). ``verify``: 0 pass, 1 mismatch, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from converters.errors import BadInput
from converters.isolation import DEFAULT_TIMEOUT
from converters.report import summary_line
from converters.targets import TARGETS
from converters.verify import DEFAULT_TOLERANCES, Tolerance, parse_tolerance

EXIT_SOME_FAILED = 1
EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``convert`` options (shared by the gateway CLI and ``python -m converters``)."""
    parser.add_argument("model_file", type=Path, help=".keras, .h5 (Keras), .pt (TorchScript) or .pt2 (torch.export)")
    parser.add_argument("--name", required=True, help="model name in the repository")
    parser.add_argument("--to", required=True, help=f"comma-separated targets or 'all' ({', '.join(TARGETS)})")
    parser.add_argument("--model-repository", type=Path, default=Path("model_repo"), help="repository directory")
    parser.add_argument("--samples", type=Path, help="validation inputs: .npy (one input) or .npz keyed by input name")
    parser.add_argument("--labels", type=Path, help="integer class labels (.npy), one per sample: reports accuracy")
    parser.add_argument(
        "--input-spec",
        action="append",
        metavar="NAME:DATATYPE:DIMS",
        help="input spec, e.g. image:FP32:-1,1,8,8 (repeat per input); required for TorchScript",
    )
    parser.add_argument("--output-names", help="comma-separated output names (default: from the model or output_N)")
    parser.add_argument(
        "--tolerance",
        action="append",
        metavar="PREC=ATOL,RTOL[,MIN_TOP1]",
        help="override a precision's tolerance, e.g. fp16=1e-2,1e-2 (defaults: "
        + "; ".join(f"{k} {v.atol:g},{v.rtol:g},{v.min_top1:g}" for k, v in DEFAULT_TOLERANCES.items())
        + ")",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per conversion step")
    parser.add_argument("--jobs", type=int, default=2, help="conversion/verification subprocesses run at once")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of Markdown")


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``verify`` options."""
    parser.add_argument("version_dir", type=Path, help="a published version: MODEL_REPOSITORY/MODEL/VERSION")
    parser.add_argument("--source", type=Path, required=True, help="the model file the version was converted from")
    parser.add_argument("--samples", type=Path, help="validation inputs (.npy, or .npz keyed by input name)")
    parser.add_argument("--labels", type=Path, help="integer class labels (.npy), one per sample")
    parser.add_argument(
        "--tolerance",
        action="append",
        metavar="PREC=ATOL,RTOL[,MIN_TOP1]",
        help="override a precision's tolerance (default: the ones the version was published with)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per step")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of Markdown")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``convert`` and ``verify`` to the gateway's CLI."""
    parser = subparsers.add_parser("convert", help="convert, verify and publish a Keras or PyTorch model")
    add_arguments(parser)
    parser.set_defaults(func=main)
    checker = subparsers.add_parser("verify", help="re-run a published version's numerical checks against its source")
    add_verify_arguments(checker)
    checker.set_defaults(func=verify_main)


def _tolerances(texts: list[str] | None) -> dict[str, Tolerance]:
    tolerances: dict[str, Tolerance] = {}
    for text in texts or []:
        try:
            precision, tolerance = parse_tolerance(text)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        tolerances[precision] = tolerance
    return tolerances


def verify_main(args: argparse.Namespace) -> int:
    """``modelgate verify``: print the same table as ``convert``; exit 0 pass, 1 mismatch, 2 bad input."""
    from converters.recheck import VerifyRequest, reverify
    from converters.report import to_markdown

    try:
        if args.timeout <= 0:
            raise BadInput("--timeout must be positive")
        for option, path in (("--samples", args.samples), ("--labels", args.labels)):
            if path is not None and not path.is_file():
                raise BadInput(f"{option} {path}: no such file")
        request = VerifyRequest(args.version_dir, args.source, args.samples, args.labels,
                                _tolerances(args.tolerance), args.timeout)  # fmt: skip
        report = reverify(request, lambda line: print(line, file=sys.stderr, flush=True))
    except BadInput as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(report.to_dict(), indent=2) if args.json else to_markdown(report))
    for artifact in report.artifacts:
        print(summary_line(artifact), file=sys.stderr)
    return report.exit_code


def build_request(args: argparse.Namespace) -> Any:
    """The pipeline request from parsed arguments (BadInput on malformed values)."""
    from converters.pipeline import ConversionRequest
    from converters.spec import parse_input_spec

    tolerances = {**DEFAULT_TOLERANCES, **_tolerances(args.tolerance)}
    if args.timeout <= 0:
        raise BadInput("--timeout must be positive")
    if args.jobs < 1:
        raise BadInput("--jobs must be at least 1")
    return ConversionRequest(
        source=args.model_file,
        name=args.name,
        targets=args.to,
        repository=args.model_repository,
        samples=args.samples,
        labels=args.labels,
        input_spec=[parse_input_spec(s) for s in args.input_spec] if args.input_spec else None,
        output_names=[n.strip() for n in args.output_names.split(",")] if args.output_names else None,
        tolerances=tolerances,
        timeout=args.timeout,
        jobs=args.jobs,
    )


def main(args: argparse.Namespace) -> int:
    """Run the conversion; print progress to stderr and the report to stdout; return the exit code."""
    from converters.pipeline import run
    from converters.report import to_markdown

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        report = run(build_request(args), log)
    except BadInput as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"error: could not write to the repository: {exc}; nothing half-written was left", file=sys.stderr)
        return EXIT_SOME_FAILED
    print(json.dumps(report.to_dict(), indent=2) if args.json else to_markdown(report))
    return report.exit_code
