"""The framework comparison report: one row per published version, figures matching the conversion reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.server_process import ServerProcess
from tests.loadtests.conftest import VERSION_REPORTS, VERSIONED, RunModelgate
from tests.loadtests.test_lt_e2e import metrics_url

pytestmark = pytest.mark.e2e


def test_every_published_version_gets_a_row_beside_its_conversion_report(
    gateway: ServerProcess, run_modelgate: RunModelgate, tmp_path: Path
) -> None:
    repository = Path(gateway.args[gateway.args.index("--model-repository") + 1])
    out = tmp_path / "compare"
    result = run_modelgate(
        "loadtest-compare-versions", "--host", gateway.url, "--model", VERSIONED, "--model-repository",
        str(repository), "--large-batch", "8", "--shape", "constant:users=1", "--duration", "2",
        "--out", str(out), "--metrics-url", metrics_url(gateway),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    rows = data["versions"]
    assert [r["version"] for r in rows] == ["1", "2"]
    for row in rows:
        artifact = VERSION_REPORTS[int(row["version"])]["artifacts"][0]  # type: ignore[index]
        assert row["target"] == artifact["target"] and row["backend"] == artifact["backend"]
        assert row["accuracy"] == artifact["accuracy"] and row["size_bytes"] == artifact["size_bytes"]
        assert row["compression_vs_fp32"] == artifact["compression_vs_fp32"]
        assert row["source_accuracy"] == 0.97 and row["f1"] is None
        assert row["accuracy_delta"] == pytest.approx(artifact["accuracy"] - 0.97)
        for batch, folder in ((1, row["folder_b1"]), (8, row["folder_large"])):
            summary = json.loads((out / folder / "summary.json").read_text(encoding="utf-8"))
            assert summary["run"]["version"] == row["version"] and summary["run"]["batch_size"] == batch
            assert summary["results"][0]["failures"] == 0
            assert summary["server"]["requests"] == summary["results"][0]["requests"]
        assert row["samples_per_s_large"] > 0 and row["large_batch"] == 8
    page = (out / "comparison.md").read_text(encoding="utf-8")
    assert "| 2 | target2 | onnxruntime |" in page and "-2.00 pt" in page and "50.0 KB" in page
    assert "| — |" in page  # no macro-F1 in these reports
    assert (out / "comparison.png").read_bytes().startswith(b"\x89PNG")


def test_an_unserved_version_is_refused(gateway: ServerProcess, run_modelgate: RunModelgate, tmp_path: Path) -> None:
    result = run_modelgate(
        "loadtest-compare-versions", "--host", gateway.url, "--model", VERSIONED, "--versions", "1,7",
        "--out", str(tmp_path / "compare"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "--versions: 7 not served (ready: 1, 2)" in result.stderr
