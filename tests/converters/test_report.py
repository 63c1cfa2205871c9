"""The conversion report renders every artifact, verdicts and figures, as strict JSON and Markdown."""

from __future__ import annotations

import json

import numpy as np
import pytest

from converters.diagnose import Diagnosis
from converters.profile import latency_stats
from converters.report import ArtifactResult, ConversionReport, summary_line, to_markdown
from converters.verify import DEFAULT_TOLERANCES, compare, macro_f1


def sample_report() -> ConversionReport:
    reference = np.eye(3, dtype=np.float32)
    good = ArtifactResult("onnx", "onnx", "fp32", "onnxruntime", size_bytes=60_000, load_s=0.01,
                          latency_b1_s=20e-6, latency_b32_s=90e-6, passed=True, published_version=4,
                          compression_vs_source=0.5, compression_vs_fp32=1.0, peak_rss_bytes=150 * 2**20,
                          accuracy=0.98, macro_f1=0.97,
                          latency={"1": latency_stats([20e-6] * 98 + [30e-6, 40e-6], 1),
                                   "32": latency_stats([90e-6] * 100, 32)})  # fmt: skip
    good.checks.append(compare("probs", 3, reference, reference, DEFAULT_TOLERANCES["fp32"]))
    bad = ArtifactResult("tflite_fp16", "tflite", "fp16", "tflite", size_bytes=34_000, compression_vs_fp32=0.58)
    bad.checks.append(compare("probs", 3, reference + np.float32(np.nan), reference, DEFAULT_TOLERANCES["fp16"]))
    bad.fail("verify", Diagnosis("probs at batch 3: 9 NaN/Inf value(s)", "do not publish it"))
    return ConversionReport(
        name="digits", source="m.keras", source_kind="keras", inputs=[], outputs=[], sample_count=3,
        samples="s.npy", tolerances=dict(DEFAULT_TOLERANCES), artifacts=[good, bad], recommended="onnx", exit_code=1,
        source_size_bytes=120_000, source_accuracy=0.99, source_macro_f1=0.98,
    )  # fmt: skip


def test_markdown_has_one_row_per_artifact_with_verdicts_and_figures() -> None:
    text = to_markdown(sample_report())
    assert "| onnx | pass | 4 | 0 | 100.00% | 98.00% (-1.00 pt) | 97.00% (-1.00 pt) |" in text
    assert "| tflite_fp16 | FAIL (verify): probs at batch 3: 9 NaN/Inf value(s) | – | nan | 33.33% | – | – |" in text
    assert (
        "| onnx | 58.6 KB | 0.50 | 1.00 | 10.0 ms | 20 µs / 20 µs / 30 µs | 50,000 | 90 µs / 90 µs / 90 µs | "
        "355,556 | 150 MB |"
    ) in text
    assert "| tflite_fp16 | 33.2 KB | – | 0.58 | – | – | – | – | – | – |" in text
    assert "- **tflite_fp16** (verify): probs at batch 3: 9 NaN/Inf value(s). What to do: do not publish it." in text
    assert "Recommended (fastest passing, servable): **onnx**" in text


def test_json_is_strict_and_complete() -> None:
    data = json.loads(json.dumps(sample_report().to_dict(), allow_nan=False))
    assert data["exit_code"] == 1
    assert [a["target"] for a in data["artifacts"]] == ["onnx", "tflite_fp16"]
    assert data["artifacts"][1]["checks"][0]["max_abs_error"] == "nan"
    assert data["tolerances"]["fp16"] == {"atol": 5e-3, "rtol": 1e-2, "min_top1": 0.99}
    assert data["schema_version"] == 2 and data["source_size_bytes"] == 120_000
    onnx = data["artifacts"][0]
    assert onnx["latency"]["32"]["samples_per_s"] == pytest.approx(32 / 90e-6)
    assert onnx["latency"]["1"]["p99_s"] == 30e-6 and onnx["latency"]["1"]["p95_s"] == 20e-6
    assert onnx["macro_f1"] == 0.97 and onnx["compression_vs_source"] == 0.5 and onnx["peak_rss_bytes"] == 150 * 2**20
    assert data["artifacts"][1]["max_abs_error"] == "nan"


def test_macro_f1_matches_the_definition() -> None:
    labels = np.array([0, 0, 1, 1, 2])
    scores = np.eye(3)[[0, 1, 1, 1, 0]]
    # class 0: tp 1, fp 1, fn 1 -> 0.5; class 1: tp 2, fp 1, fn 0 -> 0.8; class 2: tp 0, fn 1 -> 0
    assert macro_f1(scores, labels) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert macro_f1(np.zeros(5), labels) is None


def test_summary_line() -> None:
    good, bad = sample_report().artifacts
    assert summary_line(good) == "  ok   onnx         -> version 4"
    assert summary_line(bad).startswith("  FAIL tflite_fp16  (not published) : probs at batch 3")
