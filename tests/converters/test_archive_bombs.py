"""Archives and HDF5 files that would expand past the bounds are refused before anything is extracted.

Crafted with the standard library (and h5py): a deflated run of zeros (~1000x), the same nested in
a stored archive, more members than allowed, and HDF5 datasets that declare far more than the file
holds. ``modelgate convert`` must exit 2 naming the file and the bound, and write nothing.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from converters.__main__ import entry
from converters.errors import BadInput
from converters.safety import DEFAULT_LIMITS, ArchiveBomb, ArchiveLimits, check_archive, check_hdf5

MiB = 1024 * 1024
#: Marker members that make a zip look like each kind of model (detection reads names only).
LOOKS_LIKE = {
    "pt2": {"m/archive_format": b"pt2", "m/models/model.json": b"{}"},
    "pt": {"m/code/__torch__/m.py": b"", "m/data.pkl": b"\x80\x02}q\x00."},
    "keras": {"config.json": json.dumps({"class_name": "Sequential", "config": {}}).encode(), "model.weights.h5": b""},
}


def zeros_member(archive: zipfile.ZipFile, name: str, size: int) -> None:
    """A member of ``size`` zero bytes, deflated (about 1000x), written in chunks."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w", force_zip64=True) as member:
        chunk = bytes(MiB)
        for _ in range(size // MiB):
            member.write(chunk)


def bomb(path: Path, kind: str, size: int = 80 * MiB) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in LOOKS_LIKE[kind].items():
            archive.writestr(name, data)
        zeros_member(archive, "m/data/0", size)
    return path


def convert(path: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = entry([str(path), "--name", "m", "--to", "onnx", "--model-repository", str(repo)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("kind", "suffix"), [("pt2", ".pt2"), ("pt", ".pt"), ("keras", ".keras")])
def test_a_zip_bomb_is_refused_before_extraction(
    kind: str, suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = bomb(tmp_path / f"bomb{suffix}", kind)
    assert source.stat().st_size < MiB
    code, err = convert(source, tmp_path / "repo", capsys)
    assert code == 2, err
    assert err.startswith(f"error: {source} is refused before extraction: it expands ")
    assert "model weights never compress more than 100x (a zip bomb?)" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "repo").exists()


def test_a_bomb_nested_in_a_stored_archive_is_refused(tmp_path: Path) -> None:
    inner = bomb(tmp_path / "inner.zip", "pt2")
    outer = tmp_path / "outer.pt2"
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in LOOKS_LIKE["pt2"].items():
            archive.writestr(name, data)
        archive.write(inner, "m/extra/inner.zip")
    with pytest.raises(ArchiveBomb, match=r"\(member 'm/extra/inner.zip'\) is refused before extraction"):
        check_archive(outer)


def test_too_many_members_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "many.pt2"
    with zipfile.ZipFile(source, "w") as archive:
        for name, data in LOOKS_LIKE["pt2"].items():
            archive.writestr(name, data)
        for i in range(DEFAULT_LIMITS.max_members):
            archive.writestr(f"m/data/{i}", b"")
    code, err = convert(source, tmp_path / "repo", capsys)
    assert code == 2
    assert f"it holds more than {DEFAULT_LIMITS.max_members} archive members (a zip bomb?)" in err


def test_the_total_size_is_bounded_across_nested_archives(tmp_path: Path) -> None:
    """Stored (ratio 1) members: only the total bound applies; it counts nested archives too."""
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("w", bytes(3 * MiB))
    outer = tmp_path / "outer.pt2"
    with zipfile.ZipFile(outer, "w") as archive:
        archive.writestr("w", bytes(2 * MiB))
        archive.write(inner, "inner.zip")
    check_archive(outer, ArchiveLimits(max_bytes=9 * MiB))  # 2 + 3 + 3 (the inner zip itself) MiB
    with pytest.raises(ArchiveBomb, match=r"it expands to more than 7 MiB \(a zip bomb\?\)"):
        check_archive(outer, ArchiveLimits(max_bytes=7 * MiB))


def test_real_weights_pass(tmp_path: Path) -> None:
    """Random float32 weights (incompressible) well past the ratio floor are accepted."""
    source = tmp_path / "weights.pt2"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("m/data/0", rng.random(2 * MiB, dtype=np.float32).tobytes())
    check_archive(source, ArchiveLimits(ratio_floor_bytes=MiB))


def hdf5_declaring(path: Path, elements: int) -> Path:
    """An HDF5 file with a chunked, compressed dataset of ``elements`` float32 never written (a few KB)."""
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {}})
        handle.create_dataset("w", shape=(elements,), dtype="float32", chunks=(min(elements, MiB),), compression="gzip")
    return path


def test_an_hdf5_bomb_is_refused_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = hdf5_declaring(tmp_path / "bomb.h5", 64 * MiB)  # 256 MiB declared
    assert source.stat().st_size < MiB
    code, err = convert(source, tmp_path / "repo", capsys)
    assert code == 2, err
    assert err.startswith(f"error: {source} is refused before loading: its datasets declare 256 MiB in ")
    assert "(an HDF5 bomb?)" in err and not (tmp_path / "repo").exists()


def test_an_hdf5_bomb_inside_a_keras_zip_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = hdf5_declaring(tmp_path / "w.h5", 64 * MiB)
    source = tmp_path / "bomb.keras"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("config.json", LOOKS_LIKE["keras"]["config.json"])
        archive.write(weights, "model.weights.h5")
    code, err = convert(source, tmp_path / "repo", capsys)
    assert code == 2, err
    assert "(member 'model.weights.h5') is refused before loading: its datasets declare 256 MiB" in err


def test_a_truncated_hdf5_is_bad_input(tmp_path: Path) -> None:
    source = tmp_path / "cut.h5"
    source.write_bytes(hdf5_declaring(tmp_path / "whole.h5", 8).read_bytes()[:600])
    with pytest.raises(BadInput, match="cannot read the HDF5 file"):
        check_hdf5(source, str(source), source.stat().st_size)
