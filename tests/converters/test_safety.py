"""Untrusted model files never run code: crafted files with a pickled payload or a Lambda are refused.

Each crafted file carries a payload that would create a canary file if any loader ran it;
``modelgate convert`` must exit 2 with a clear message, and the canary must never appear.
The positive controls prove the crafted files are live: a plain unpickler (or the raw
``torch.export.load``) does run the payload.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from converters.__main__ import entry
from converters.errors import BadInput
from converters.isolation import run_step
from converters.safety import check_model_file, pickled_globals_refused
from tests.converters import crafted
from tests.converters.payload import Payload


@pytest.fixture(scope="module")
def tiny_torch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny_torch")
    files = {"pt2": folder / "tiny.pt2", "pt": folder / "tiny.pt"}
    run_step("tests.converters.crafted_steps:tiny_torch", {"pt2": str(files["pt2"]), "pt": str(files["pt"])}, folder)
    return files


def convert(path: Path, repo: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = entry([str(path), "--name", "m", "--to", "onnx", "--model-repository", str(repo), *extra])
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, canary: Path, repo: Path) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and "refused" in err, err
    assert "Traceback" not in err and "\x1b[" not in err
    assert not canary.exists(), "the payload ran"
    assert not repo.exists()


def test_the_payload_is_live_for_a_plain_unpickler(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    pickle.loads(crafted.payload_bytes(canary))  # the positive control
    assert canary.exists()


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_the_scanner_finds_the_payload_at_every_protocol(tmp_path: Path, protocol: int) -> None:
    canary = tmp_path / "canary"
    assert pickled_globals_refused(crafted.payload_bytes(canary, protocol)) == ("tests.converters.payload", "touch")
    assert not canary.exists()


def test_the_scanner_follows_consecutive_pickles(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    legacy = pickle.dumps(119547037146038801333356) + pickle.dumps({"protocol": 1001}) + pickle.dumps(Payload(canary))
    assert pickled_globals_refused(legacy) == ("tests.converters.payload", "touch")
    assert not canary.exists()


def test_tensor_bytes_and_allowed_pickles_pass() -> None:
    import collections

    assert pickled_globals_refused(bytes(range(256)) * 4) is None
    assert pickled_globals_refused(pickle.dumps(collections.OrderedDict(a=[1, 2]), protocol=2)) is None


@pytest.mark.frameworks
def test_crafted_pt2_positive_control_runs_the_payload_in_torch(tiny_torch: dict[str, Path], tmp_path: Path) -> None:
    """Without our check, torch.export.load runs the pickled weight's payload (issue 14's exploit)."""
    canary = tmp_path / "canary"
    evil = crafted.pt2_with_pickled_weight(tiny_torch["pt2"], tmp_path / "evil.pt2", canary)
    run_step("tests.converters.crafted_steps:raw_torch_export_load", {"path": str(evil)}, tmp_path / "steps")
    assert canary.exists()


CRAFTERS: dict[str, Callable[[dict[str, Path], Path, Path], Path]] = {
    "pt2_pickled_weight": lambda t, d, c: crafted.pt2_with_pickled_weight(t["pt2"], d / "evil.pt2", c),
    "pt2_pickled_sample_inputs": lambda t, d, c: crafted.pt2_with_pickled_sample_inputs(t["pt2"], d / "evil.pt2", c),
    "torchscript_pickled_constants": lambda t, d, c: crafted.torchscript_with_pickled_constants(
        t["pt"], d / "evil.pt", c
    ),
}


@pytest.mark.frameworks
@pytest.mark.parametrize("kind", sorted(CRAFTERS))
def test_crafted_torch_archive_is_refused_before_loading(
    kind: str, tiny_torch: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    canary, repo = tmp_path / "canary", tmp_path / "repo"
    evil = CRAFTERS[kind](tiny_torch, tmp_path, canary)
    extra = ("--input-spec", "input:FP32:-1,4") if kind.startswith("torchscript") else ()
    code, err = convert(evil, repo, capsys, *extra)
    assert_refused(code, err, canary, repo)
    assert "calls tests.converters.payload.touch when loaded" in err


@pytest.mark.frameworks
def test_every_loader_applies_the_rule_itself(tiny_torch: dict[str, Path], tmp_path: Path) -> None:
    """The inspect step (a subprocess that loads the source) refuses on its own, before torch sees the file."""
    canary = tmp_path / "canary"
    evil = crafted.pt2_with_pickled_weight(tiny_torch["pt2"], tmp_path / "evil.pt2", canary)
    kwargs = {"source": str(evil), "kind": "torch_export", "input_spec": None, "output_names": None,
              "samples": None, "workdir": str(tmp_path)}  # fmt: skip
    with pytest.raises(BadInput, match="is refused"):
        run_step("converters.sources:inspect", kwargs, tmp_path / "steps")
    assert not canary.exists()


@pytest.mark.frameworks
def test_genuine_torch_files_pass_the_rule(tiny_torch: dict[str, Path]) -> None:
    check_model_file(tiny_torch["pt2"], "torch_export")
    check_model_file(tiny_torch["pt"], "torchscript")


@pytest.mark.parametrize("suffix", [".pkl", ".pt", ".pth"])
def test_plain_pickle_is_refused(suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    canary, repo = tmp_path / "canary", tmp_path / "repo"
    code, err = convert(crafted.plain_pickle(tmp_path / f"model{suffix}", canary), repo, capsys)
    assert_refused(code, err, canary, repo)
    assert "is a Python pickle" in err


def test_torch_save_checkpoint_with_payload_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    canary, repo = tmp_path / "canary", tmp_path / "repo"
    code, err = convert(crafted.torch_save_checkpoint(tmp_path / "ckpt.pt", canary), repo, capsys)
    assert_refused(code, err, canary, repo)


def test_keras_zip_with_a_pickle_member_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    canary, repo = tmp_path / "canary", tmp_path / "repo"
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"")
        archive.writestr("assets/extra.pkl", crafted.payload_bytes(canary))
    code, err = convert(path, repo, capsys)
    assert_refused(code, err, canary, repo)


@pytest.mark.frameworks
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_lambda_layer_is_refused(suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    canary, repo = tmp_path / "canary", tmp_path / "repo"
    path = tmp_path / f"lambda{suffix}"
    run_step("tests.converters.crafted_steps:keras_lambda", {"path": str(path), "canary": str(canary)}, tmp_path)
    canary.unlink(missing_ok=True)  # building the model ran it once, in the crafting step
    code, err = convert(path, repo, capsys)
    assert_refused(code, err, canary, repo)
    assert "Lambda layer(s) ['sneaky']" in err
