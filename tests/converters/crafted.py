"""Crafted model files carrying a pickled payload (pure stdlib, built from real archives)."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

from tests.converters.payload import Payload


def payload_bytes(canary: Path, protocol: int = 2) -> bytes:
    return pickle.dumps(Payload(canary), protocol=protocol)


def rewrite_zip(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    """Copy the archive ``source`` to ``target`` with the members whose name ends with a key replaced."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            for suffix, value in replace.items():
                if info.filename.endswith(suffix):
                    data = value
            new.writestr(info, data)
    return target


def pt2_with_pickled_weight(pt2: Path, target: Path, canary: Path) -> Path:
    """A .pt2 whose first weight is flagged ``use_pickle`` and holds the payload (issue 14's exploit)."""
    with zipfile.ZipFile(pt2) as archive:
        config_name = next(n for n in archive.namelist() if n.endswith("data/weights/model_weights_config.json"))
        config = json.loads(archive.read(config_name))
    fqn, meta = next(iter(config["config"].items()))
    meta["use_pickle"] = True
    config["config"] = {fqn: meta, **config["config"]}
    return rewrite_zip(
        pt2,
        target,
        {"data/weights/model_weights_config.json": json.dumps(config).encode(), f"weights/{meta['path_name']}":
         payload_bytes(canary)},
    )  # fmt: skip


def pt2_with_pickled_sample_inputs(pt2: Path, target: Path, canary: Path) -> Path:
    """A .pt2 whose sample inputs (a torch.save zip nested in the archive) carry the payload."""
    with zipfile.ZipFile(pt2) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data/sample_inputs/model.pt"))
        inner = archive.read(name)
    nested = target.with_suffix(".inner.zip")
    nested.write_bytes(inner)
    rewrite_zip(nested, nested.with_suffix(".new.zip"), {"data.pkl": payload_bytes(canary)})
    return rewrite_zip(pt2, target, {"data/sample_inputs/model.pt": nested.with_suffix(".new.zip").read_bytes()})


def torchscript_with_pickled_constants(pt: Path, target: Path, canary: Path) -> Path:
    """A TorchScript zip whose constants.pkl is the payload."""
    return rewrite_zip(pt, target, {"constants.pkl": payload_bytes(canary)})


def torch_save_checkpoint(target: Path, canary: Path) -> Path:
    """A torch.save-style zip (``archive/data.pkl``) whose pickle is the payload."""
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("archive/data.pkl", payload_bytes(canary))
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/byteorder", "little")
    return target


def plain_pickle(target: Path, canary: Path) -> Path:
    target.write_bytes(payload_bytes(canary))
    return target
