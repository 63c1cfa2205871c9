"""CPU cost of decoding a V2 REST JSON infer request (and encoding a small response), in-process.

Times ``gateway.protocols.v2.json_codec.decode_request`` on request bodies of several sizes and
layouts (flat ``data`` or nested like the shape), with ``time.thread_time`` (CPU time of this thread,
so other processes' load inflates it less than wall time), ``--rounds`` short runs each, and prints
the best run's µs per call. Nothing else runs: no server, no model.

Run: ``python -m bench.json_decode [--rounds 60] [--only SUBSTRING ...]``. On another checkout
(``PYTHONPATH=<checkout> python <this file>``) it gives the before figure of a change.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Sequence

import numpy as np
import orjson

from gateway.core.codec.limits import DEFAULT_LIMITS, InputRules
from gateway.core.types import InferResponse, Tensor, TensorSpec
from gateway.protocols.v2.json_codec import decode_request, encode_response

#: label, datatype, shape, nested, calls per run, values ("mixed": JavaScript-style 0 among floats)
CASES: tuple[tuple[str, str, tuple[int, ...], bool, int, str], ...] = (
    ("FP32 [1,64] flat", "FP32", (1, 64), False, 250, "float"),
    ("FP32 [1,64] nested", "FP32", (1, 64), True, 250, "float"),
    ("FP32 [1,8,8,1] flat", "FP32", (1, 8, 8, 1), False, 250, "float"),
    ("FP32 [1,8,8,1] nested", "FP32", (1, 8, 8, 1), True, 250, "float"),
    ("FP32 [1,64] flat, ints among floats", "FP32", (1, 64), False, 250, "mixed"),
    ("FP32 [64,64] flat", "FP32", (64, 64), False, 15, "float"),
    ("FP32 [64,64] nested", "FP32", (64, 64), True, 15, "float"),
    ("FP32 [1000,64] flat", "FP32", (1000, 64), False, 1, "float"),
    ("FP32 [1000,64] nested", "FP32", (1000, 64), True, 1, "float"),
    ("INT64 [1,64] flat", "INT64", (1, 64), False, 250, "int"),
    ("BOOL [1,64] flat", "BOOL", (1, 64), False, 250, "bool"),
    ("BYTES [1,16] flat", "BYTES", (1, 16), False, 250, "text"),
)


def best_us(call: Callable[[], object], number: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.thread_time()
        for _ in range(number):
            call()
        best = min(best, (time.thread_time() - start) / number)
    return best * 1e6


def request_body(datatype: str, shape: tuple[int, ...], nested: bool, values: str) -> bytes:
    rng = np.random.default_rng(0)
    size = int(np.prod(shape))
    data: list[object]
    if values == "float":
        data = rng.random(size).tolist()
    elif values == "mixed":
        data = [0 if v < 0.3 else v for v in rng.random(size).tolist()]
    elif values == "int":
        data = rng.integers(0, 1000, size).tolist()
    elif values == "bool":
        data = (rng.random(size) > 0.5).tolist()
    else:
        data = [f"s{i}" for i in range(size)]
    tensor_data: object = np.array(data, dtype=object).reshape(shape).tolist() if nested else data
    entry = {"name": "x", "datatype": datatype, "shape": list(shape), "data": tensor_data}
    return orjson.dumps({"inputs": [entry]})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--only", nargs="*", default=[], help="run the cases whose label contains one of these")
    args = parser.parse_args(argv)
    gc.freeze()  # as the gateway does once its models are loaded
    request = None
    for label, datatype, shape, nested, number, values in CASES:
        if args.only and not any(part in label for part in args.only):
            continue
        body = request_body(datatype, shape, nested, values)
        rules = InputRules({"x": TensorSpec("x", datatype, (-1, *shape[1:]))}, 0, DEFAULT_LIMITS)
        request = decode_request(body, None, "m", None, rules)
        us = best_us(lambda: decode_request(body, None, "m", None, rules), number, args.rounds)  # noqa: B023
        print(f"decode_request  {label:38s} {us:9.1f} µs", flush=True)
    if request is not None:
        probs = np.random.default_rng(1).random((1, 10), dtype=np.float32)
        response = InferResponse("m", "1", [Tensor("probs", "FP32", probs)])
        us = best_us(lambda: encode_response(response, request), 1000, args.rounds)
        print(f"encode_response {'FP32 [1,10] out':38s} {us:9.1f} µs")


if __name__ == "__main__":
    main()
