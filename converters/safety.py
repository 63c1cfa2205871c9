"""Refuse model files that could run code when a framework loads them (pure stdlib, no framework).

A model file is untrusted input. Pickle, which torch uses inside its archives, calls any
importable function the file names while loading; ``torch.export.load`` unpickles weights
flagged ``use_pickle`` with ``weights_only=False``; a Keras ``Lambda`` layer carries Python
bytecode. So before any loader (``torch.export.load``, ``torch.jit.load``,
``keras.models.load_model``) sees a file, :func:`check_model_file` applies one rule:

* every pickle stream anywhere in the file (each archive member, archives nested in
  archives, consecutive pickles in one member) may reference only the tensor-rebuilding
  functions and containers listed in :data:`ALLOWED_GLOBALS` (what torch's own
  ``weights_only=True`` loader accepts) and TorchScript's own compiled classes
  (``__torch__.*``, whose code is TorchScript, not Python); the pickles are walked with
  an unpickler whose ``find_class`` returns inert stand-ins, so nothing is imported or called;
* a Keras model may not contain ``Lambda`` layers (the only layer that stores Python code);
  Keras itself is also called with ``safe_mode=True``;
* a bare pickle file (or a ``torch.save`` checkpoint) is refused outright: it is not a model
  graph, and loading it is running it.

Before any of that, the file's size is bounded (:class:`ArchiveLimits`): a zip archive (with the
archives nested in it) may not declare more than 16 GiB uncompressed or 10,000 members, nor
expand more than 100x past 64 MiB; the datasets of an HDF5 file (a legacy .h5, the weights in
a .keras zip) likewise. These are read from the directories, before a member is extracted.

Anything refused raises :class:`UnsafeModel` (a :class:`BadInput`: the CLI exits 2).
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converters.errors import BadInput

#: ``(module, name)`` pairs a pickle in a model file may reference.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice")]
    + [
        ("torch._utils", f)
        for f in (
            "_rebuild_tensor",
            "_rebuild_tensor_v2",
            "_rebuild_tensor_v3",
            "_rebuild_parameter",
            "_rebuild_parameter_with_state",
            "_rebuild_qtensor",
            "_rebuild_sparse_tensor",
            "_rebuild_meta_tensor_no_storage",
            "_rebuild_nested_tensor",
        )
    ]
    + [
        ("torch", s)
        for s in (
            "FloatStorage",
            "DoubleStorage",
            "HalfStorage",
            "BFloat16Storage",
            "LongStorage",
            "IntStorage",
            "ShortStorage",
            "CharStorage",
            "ByteStorage",
            "BoolStorage",
            "UntypedStorage",
            "Size",
            "device",
            "float32",
            "float64",
            "float16",
            "bfloat16",
            "int64",
            "int32",
            "int16",
            "int8",
            "uint8",
            "bool",
            "per_tensor_affine",
            "per_channel_affine",
            "qint8",
            "quint8",
        )
    ]
    + [("torch.nn.parameter", "Parameter"), ("torch.serialization", "_get_layout"), ("torch", "strided")]
    + [
        ("torch.jit._pickle", f)
        for f in (
            "build_intlist",
            "build_tensorlist",
            "build_doublelist",
            "build_boollist",
            "build_tensor_from_id",
            "restore_type_tag",
        )
    ]
)
#: TorchScript's compiled classes: the archive's own TorchScript code, which cannot call Python.
ALLOWED_MODULE_PREFIXES = ("__torch__",)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MAX_NESTING = 3
#: Keras layer classes that store Python code.
KERAS_CODE_LAYERS = frozenset({"Lambda", "TFOpLambda", "__lambda__"})


class UnsafeModel(BadInput):
    """The file would run code (or names something that could) when loaded; it was not loaded."""


class _Refused(Exception):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.module = module
        self.name = name


class _Inert:
    """Stands in for every allowed global: calling or building it does nothing, and it accepts every
    operation an unpickler may apply, so the walk never stops earlier than a real load would."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def append(self, value: Any) -> None:
        del value

    def extend(self, values: Any) -> None:
        del values

    def add(self, value: Any) -> None:
        del value

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        del state

    def __getitem__(self, key: Any) -> _Inert:
        return _Inert()

    def __setitem__(self, key: Any, value: Any) -> None:
        del key, value


#: Allowed globals that are side-effect-free builtins: the walk uses the real ones.
_REAL: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
}


class _Scanner(pickle.Unpickler):
    """Walks a pickle without importing or calling anything; records what it would have resolved."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _REAL:
            return _REAL[module, name]
        if (module, name) in ALLOWED_GLOBALS or module.split(".")[0] in ALLOWED_MODULE_PREFIXES:
            return _Inert
        if _IDENTIFIER.match(module) and _IDENTIFIER.match(name):
            raise _Refused(module, name)
        # Not a Python name: a real unpickler's import would fail too, so this is not a pickle.
        raise pickle.UnpicklingError("not a global")

    def persistent_load(self, pid: Any) -> Any:
        return _Inert()


def pickled_globals_refused(data: bytes) -> tuple[str, str] | None:
    """The first disallowed global any pickle in ``data`` references, or None.

    ``data`` is read as consecutive pickles (as legacy ``torch.save`` writes them) until
    something that is not a pickle; bytes that are not a pickle at all are fine (tensor data).
    """
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        start = stream.tell()
        try:
            _Scanner(stream).load()
        except _Refused as refused:
            return refused.module, refused.name
        except Exception:
            return None
        if stream.tell() == start:
            return None
    return None


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what an archive (with the archives nested in it) may expand to, checked on its
    directory before any member is read; zipfile never expands a member past its declared size."""

    max_bytes: int = 16 * 1024**3
    max_members: int = 10_000
    #: Uncompressed / compressed, once the archive expands past ``ratio_floor_bytes``: weights barely
    #: compress (torch stores them, Keras deflates them ~1.1x), a zip bomb compresses ~1000x.
    max_ratio: int = 100
    ratio_floor_bytes: int = 64 * 1024**2


DEFAULT_LIMITS = ArchiveLimits()


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class ArchiveBomb(BadInput):
    """The archive would expand past the bounds (a zip bomb, or a file far larger than any model)."""


class _Budget:
    """What the archive and every archive nested in it may still expand to, in bytes and members."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.bytes = limits.max_bytes
        self.members = limits.max_members

    def spend(self, archive: zipfile.ZipFile, where: str) -> None:
        """Charge the archive's declared sizes or refuse it (:class:`ArchiveBomb`)."""
        infos = archive.infolist()
        expanded = sum(i.file_size for i in infos)
        packed = max(sum(i.compress_size for i in infos), 1)
        self.members -= len(infos)
        self.bytes -= expanded
        limits = self.limits
        if self.members < 0:
            cause = f"it holds more than {limits.max_members} archive members"
        elif self.bytes < 0:
            cause = f"it expands to more than {_size(limits.max_bytes)}"
        elif expanded > limits.ratio_floor_bytes and expanded > limits.max_ratio * packed:
            cause = (
                f"it expands {expanded // packed}x ({_size(packed)} to {_size(expanded)}), and model weights "
                f"never compress more than {limits.max_ratio}x"
            )
        else:
            return
        raise ArchiveBomb(f"{where} is refused before extraction: {cause} (a zip bomb?)")


def _size(size: int) -> str:
    return f"{size / 1024**2:.4g} MiB"


def _members(archive: zipfile.ZipFile, depth: int, budget: _Budget, where: str) -> Iterator[tuple[str, bytes]]:
    budget.spend(archive, where)
    for info in archive.infolist():
        if info.is_dir():
            continue
        data = archive.read(info)
        yield info.filename, data
        if depth < _MAX_NESTING and data[:2] == b"PK":
            try:
                inner = zipfile.ZipFile(io.BytesIO(data))
            except zipfile.BadZipFile:
                continue
            with inner:
                nested = _members(inner, depth + 1, budget, f"{where} (member {info.filename!r})")
                yield from ((f"{info.filename}!{n}", d) for n, d in nested)


def check_archive(path: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> None:
    """``path`` stays within the archive bounds, and every pickle in it (and in archives inside it)
    references only allowed globals."""
    try:
        with zipfile.ZipFile(path) as archive:
            for member, data in _members(archive, 0, _Budget(limits), str(path)):
                refused = pickled_globals_refused(data)
                if refused is not None:
                    module, name = refused
                    raise UnsafeModel(
                        f"{path} is refused: its member {member!r} is a pickle that calls {module}.{name} when "
                        "loaded, so loading the file would run code from it. Only tensors and TorchScript's own "
                        "classes are accepted in pickles; re-export the model with torch.export.save / "
                        "torch.jit.save from plain tensors (see the README, 'Security: model files')"
                    )
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadInput(f"{path}: cannot read the archive ({exc}); is the file complete?") from None


def _keras_code_layers(config: Any) -> Iterator[str]:
    """Names of layers in a Keras config that carry Python code."""
    if isinstance(config, dict):
        class_name = config.get("class_name")
        if class_name in KERAS_CODE_LAYERS or config.get("function_type") == "lambda":
            inner = config.get("config")
            yield str(inner.get("name", class_name)) if isinstance(inner, dict) else str(class_name)
        for value in config.values():
            yield from _keras_code_layers(value)
    elif isinstance(config, list):
        for value in config:
            yield from _keras_code_layers(value)


def _keras_config(path: Path, hdf5: bool) -> Any:
    if hdf5:
        import h5py

        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("model_config")
        if raw is None:
            raise BadInput(f"{path} is an HDF5 file without a model config (weights only?): save the whole model")
        text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    else:
        with zipfile.ZipFile(path) as archive:
            text = archive.read("config.json").decode("utf-8")
    try:
        return json.loads(text)
    except ValueError:
        raise BadInput(f"{path}: the Keras model config is not valid JSON (corrupt file?)") from None


def check_hdf5(source: Path | io.BytesIO, where: str, stored: int, limits: ArchiveLimits = DEFAULT_LIMITS) -> None:
    """The datasets of an HDF5 file (a legacy .h5 model, a .keras zip's weights) stay within the bounds.

    Their declared sizes are what a loader allocates; a chunked, compressed or never-written
    dataset can declare gigabytes in a file of kilobytes (an HDF5 bomb).
    """
    import h5py

    declared = 0

    def add(_: str, item: Any) -> None:
        nonlocal declared
        if isinstance(item, h5py.Dataset):
            declared += int(item.size or 0) * item.dtype.itemsize

    try:
        with h5py.File(source, "r") as handle:
            handle.visititems(add)
    except OSError as exc:
        raise BadInput(f"{where}: cannot read the HDF5 file ({exc}); is the file complete?") from None
    if declared > limits.max_bytes:
        cause = f"its datasets declare {_size(declared)}, more than {_size(limits.max_bytes)}"
    elif declared > limits.ratio_floor_bytes and declared > limits.max_ratio * max(stored, 1):
        cause = (
            f"its datasets declare {_size(declared)} in {_size(stored)} ({declared // max(stored, 1)}x), and "
            f"model weights never compress more than {limits.max_ratio}x"
        )
    else:
        return
    raise ArchiveBomb(f"{where} is refused before loading: {cause} (an HDF5 bomb?)")


def _check_keras_weights(path: Path, limits: ArchiveLimits) -> None:
    """The HDF5 weight files inside a .keras zip (the zip itself was bounded already). A member that is not
    HDF5 cannot be an HDF5 bomb: Keras refuses it when loading, with its own reason."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            data = archive.read(info) if info.filename.endswith(".h5") else b""
            if data.startswith(_HDF5_SIGNATURE):
                check_hdf5(io.BytesIO(data), f"{path} (member {info.filename!r})", len(data), limits)


def check_keras(path: Path, hdf5: bool, limits: ArchiveLimits = DEFAULT_LIMITS) -> None:
    """Bounded size, no Lambda layers (they store Python code) and, for .keras zips, no pickles."""
    if hdf5:
        check_hdf5(path, str(path), path.stat().st_size, limits)
    else:
        check_archive(path, limits)
        _check_keras_weights(path, limits)
    layers = sorted(set(_keras_code_layers(_keras_config(path, hdf5))))
    if layers:
        raise UnsafeModel(
            f"{path} is refused: Lambda layer(s) {layers} store Python code that would run when the model is "
            "loaded. Replace each Lambda with built-in layers (or a registered custom layer class) and save again "
            "(see the README, 'Security: model files')"
        )


def is_pickle(head: bytes) -> bool:
    """A file starting like a pickle (protocol 2+ header), e.g. a legacy torch.save or a pickle.dump."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def check_model_file(path: Path, kind: str) -> None:
    """The one rule, applied before every load: raise :class:`UnsafeModel` if loading could run code."""
    with path.open("rb") as handle:
        head = handle.read(8)
    if is_pickle(head):
        raise UnsafeModel(
            f"{path} is a Python pickle (e.g. pickle.dump or a legacy torch.save): loading a pickle runs code "
            "from it, so it is refused. Save the model with torch.export.save, torch.jit.save or Keras model.save"
        )
    if kind == "keras":
        check_keras(path, hdf5=not zipfile.is_zipfile(path))
    else:
        check_archive(path)
