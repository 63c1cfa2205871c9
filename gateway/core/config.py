"""The model repository's config.yaml format: the source of truth is these pydantic models.

A repository looks like::

    model_repo/
      digits/
        config.yaml          # ModelConfig: backend, tensors, version policy, labels...
        1/model.onnx
        2/config.yaml        # optional VersionConfig overriding the model's for version 2
        2/model.tflite

``docs/model-repository.md`` documents every field; ``modelgate models --schema`` prints
the JSON Schema generated from :class:`ModelConfig`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.core.codec.datatypes import DATATYPES
from gateway.core.errors import ConfigError

#: Model names and labels become URL path segments and metric labels: keep them simple.
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: A version as clients write it: 1 to 18 ASCII digits, no leading zero (fits an int64).
VERSION_PATTERN = re.compile(r"^[1-9][0-9]{0,17}$")
CONFIG_FILE = "config.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorConfig(_Strict):
    """One input or output. ``shape`` is the full tensor shape including the batch dimension."""

    name: Annotated[str, Field(min_length=1, description="Tensor name as clients send it.")]
    datatype: Annotated[
        str, Field(description="V2 datatype: BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES.")
    ]
    shape: Annotated[list[int], Field(description="Dimensions; -1 marks a dynamic dimension (e.g. batch).")]

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, value: str) -> str:
        if value not in DATATYPES:
            raise ValueError(f"unknown datatype {value!r}; expected one of {', '.join(sorted(DATATYPES))}")
        return value

    @field_validator("shape")
    @classmethod
    def _valid_dims(cls, value: list[int]) -> list[int]:
        if any(d < -1 or d == 0 for d in value):
            raise ValueError(f"dimensions must be positive or -1 (dynamic), got {value}")
        return value


class DynamicBatching(_Strict):
    """Coalesce concurrent requests into one backend call (needs ``max_batch_size`` > 0)."""

    max_delay_ms: Annotated[
        float,
        Field(
            ge=0,
            le=1000,
            description="While the backend is busy, wait at most this long for a batch to fill (ends as soon as "
            "it is full; an idle model never waits); 0 batches only what queued.",
        ),
    ] = 0.0
    concurrency: Annotated[int, Field(ge=1, le=64, description="Batches running at once on the backend.")] = 2
    preferred_batch_sizes: Annotated[
        list[int],
        Field(
            description="Batch sizes to aim for (e.g. [8, 16]): a batch takes the largest one the queue can fill; "
            "each must be at most max_batch_size.",
        ),
    ] = []

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _positive_sizes(cls, value: list[int]) -> list[int]:
        if any(size < 1 for size in value):
            raise ValueError(f"sizes must be positive, got {value}")
        return sorted(set(value))


class VersionPolicy(_Strict):
    """Which versions to serve: exactly one of ``latest``, ``all`` or ``specific``."""

    latest: Annotated[int | None, Field(ge=1, description="Serve the N highest-numbered versions.")] = None
    all: Annotated[bool | None, Field(description="Serve every version present.")] = None
    specific: Annotated[list[int] | None, Field(min_length=1, description="Serve exactly these versions.")] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> VersionPolicy:
        chosen = [k for k in ("latest", "all", "specific") if getattr(self, k) not in (None, False)]
        if len(chosen) != 1:
            raise ValueError("set exactly one of latest (int), all (true) or specific (list of versions)")
        return self

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve, ascending, from the version numbers found on disk."""
        ordered = sorted(available)
        if self.specific is not None:
            return [v for v in ordered if v in set(self.specific)]
        if self.all:
            return ordered
        assert self.latest is not None
        return ordered[-self.latest :]


#: A backend name: any name the backend registry knows (it rejects unknown ones, listing the known ones).
BACKEND_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class VersionConfig(_Strict):
    """What one version may set in its own ``<model>/<version>/config.yaml``.

    A version file overrides the model-level file field by field, so one model can hold
    versions in different formats (the converters publish an ONNX, a TFLite and a
    SavedModel version of the same source model).
    """

    backend: Annotated[
        str | None,
        Field(
            pattern=BACKEND_NAME_PATTERN,
            description="Which backend serves this model (required here or in the version's file); "
            "one of the gateway's registered backends (onnxruntime, tflite, tensorflow, torchserve, tfserving).",
        ),
    ] = None
    inputs: Annotated[
        list[TensorConfig] | None,
        Field(
            description="Model inputs. Optional for backends that read them from the artifact (onnxruntime, tflite)."
        ),
    ] = None
    outputs: Annotated[list[TensorConfig] | None, Field(description="Model outputs; optional like inputs.")] = None
    max_batch_size: Annotated[
        int, Field(ge=0, description="Largest batch (first dimension) accepted; 0 means no limit is enforced.")
    ] = 0
    artifact: Annotated[
        str | None,
        Field(description="File or directory name inside each version directory; default depends on the backend."),
    ] = None
    parameters: Annotated[
        dict[str, Any], Field(description="Backend-specific options (e.g. onnxruntime intra_op_threads).")
    ] = {}
    timeout_seconds: Annotated[
        float, Field(gt=0, description="Per-request deadline for the backend call (504 / DEADLINE_EXCEEDED).")
    ] = 30.0
    dynamic_batching: Annotated[
        DynamicBatching | None,
        Field(description="Enable dynamic batching (first dimension of every input and output is the batch)."),
    ] = None
    max_queue_size: Annotated[
        int, Field(ge=1, description="Requests waiting or running per model before new ones get 429.")
    ] = 256
    platform: Annotated[str | None, Field(description="Platform string reported in model metadata.")] = None

    @model_validator(mode="after")
    def _unique_tensor_names(self) -> VersionConfig:
        for kind in ("inputs", "outputs"):
            tensors = getattr(self, kind) or []
            names = [t.name for t in tensors]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind}: duplicate tensor names {dupes}")
        return self


class ModelConfig(VersionConfig):
    """The contents of ``<repository>/<model>/config.yaml``: version fields plus model-wide ones."""

    version_policy: Annotated[VersionPolicy, Field(description="Which versions are served.")] = VersionPolicy(latest=1)
    labels: Annotated[
        dict[str, int], Field(description="Version labels, e.g. {stable: 2, canary: 3}; each must be a served version.")
    ] = {}
    default_version: Annotated[
        int | None,
        Field(description="Version answering requests that name none; default: the highest served version."),
    ] = None

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, int]) -> dict[str, int]:
        for label in value:
            if not MODEL_NAME_PATTERN.fullmatch(label):
                raise ValueError(f"label {label!r} must match {MODEL_NAME_PATTERN.pattern}")
        return value


def load_model_config(path: Path) -> ModelConfig:
    """Parse and validate a model-level config.yaml, raising :class:`ConfigError` naming file and field."""
    raw = read_yaml_mapping(path)
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_validation_error(exc)}") from None


def load_version_config(model: ModelConfig, path: Path) -> ModelConfig:
    """The effective config of one version: ``path`` (if it exists) overriding ``model``."""
    if not path.exists():
        merged = model
    else:
        raw = read_yaml_mapping(path)
        try:
            override = VersionConfig.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{path}: {format_validation_error(exc)}") from None
        # Copy the validated field objects themselves (model_dump would turn nested models into dicts).
        merged = model.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})
    where = f"{path.parent.parent / CONFIG_FILE} (with {path} if present)"
    if merged.backend is None:
        raise ConfigError(f"{where}: backend: required in one of them")
    if merged.dynamic_batching is not None and merged.max_batch_size == 0:
        raise ConfigError(f"{where}: dynamic_batching: needs max_batch_size > 0")
    too_big = [
        s
        for s in (merged.dynamic_batching.preferred_batch_sizes if merged.dynamic_batching else [])
        if s > merged.max_batch_size
    ]
    if too_big:
        raise ConfigError(
            f"{where}: dynamic_batching.preferred_batch_sizes: {too_big} over max_batch_size {merged.max_batch_size}"
        )
    return merged


def read_yaml_mapping(path: Path, *, empty_ok: bool = False) -> dict[str, Any]:
    """A YAML file's top-level mapping, or :class:`ConfigError` naming the file (an empty file is
    ``{}`` when ``empty_ok``)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is None and empty_ok:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``field.path: message``."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        problems.append(f"{where}: {err['msg']}")
    return "; ".join(problems)


def dump_model_config(config: VersionConfig) -> str:
    """YAML text for a config, omitting unset optional fields (used by converters)."""
    data = config.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    return yaml.safe_dump(data, sort_keys=False)
