"""The one tensor codec: every wire format (V2 JSON and binary, V2 gRPC, TF Serving REST and gRPC),
the ``tfserving`` backend and the worker wire decode and encode tensors with these rules.

- :mod:`datatypes`: the V2 datatype table and numpy equivalents.
- :mod:`limits`: shape rules and size limits, checked from the declared shape *before* anything is
  allocated (non-negative dimensions, the model's signature and max batch, element and byte bounds).
- :mod:`raw`: raw little-endian buffers <-> arrays, BYTES length-prefix framing, BOOL bytes.
- :mod:`values`: JSON-style values <-> arrays (strict per datatype, range-checked), protobuf
  repeated fields (narrowing of wide integer fields), TF Serving's single-value fill, base64.
"""
