"""The conversion report renders every artifact, verdicts and figures, as strict JSON and Markdown."""

from __future__ import annotations

import json

import numpy as np

from converters.diagnose import Diagnosis
from converters.report import ArtifactResult, ConversionReport, summary_line, to_markdown
from converters.verify import DEFAULT_TOLERANCES, compare


def sample_report() -> ConversionReport:
    reference = np.eye(3, dtype=np.float32)
    good = ArtifactResult("onnx", "onnx", "fp32", "onnxruntime", size_bytes=60_000, load_s=0.01,
                          latency_b1_s=20e-6, latency_b32_s=90e-6, passed=True, published_version=4)  # fmt: skip
    good.checks.append(compare("probs", 3, reference, reference, DEFAULT_TOLERANCES["fp32"]))
    bad = ArtifactResult("tflite_fp16", "tflite", "fp16", "tflite", size_bytes=34_000, compression_vs_fp32=0.58)
    bad.checks.append(compare("probs", 3, reference + np.float32(np.nan), reference, DEFAULT_TOLERANCES["fp16"]))
    bad.fail("verify", Diagnosis("probs at batch 3: 9 NaN/Inf value(s)", "do not publish it"))
    return ConversionReport(
        name="digits", source="m.keras", source_kind="keras", inputs=[], outputs=[], sample_count=3,
        samples="s.npy", tolerances=dict(DEFAULT_TOLERANCES), artifacts=[good, bad], recommended="onnx", exit_code=1,
    )  # fmt: skip


def test_markdown_has_one_row_per_artifact_with_verdicts_and_figures() -> None:
    text = to_markdown(sample_report())
    assert "| onnx | pass | 4 | 58.6 KB | – | 10.0 ms | 20 µs | 90 µs |" in text
    assert "| tflite_fp16 | FAIL (verify): probs at batch 3: 9 NaN/Inf value(s) | – | 33.2 KB | 0.58 |" in text
    assert "Recommended (fastest passing, servable): **onnx**" in text


def test_json_is_strict_and_complete() -> None:
    data = json.loads(json.dumps(sample_report().to_dict(), allow_nan=False))
    assert data["exit_code"] == 1
    assert [a["target"] for a in data["artifacts"]] == ["onnx", "tflite_fp16"]
    assert data["artifacts"][1]["checks"][0]["max_abs_error"] == "nan"
    assert data["tolerances"]["fp16"] == {"atol": 5e-3, "rtol": 1e-2, "min_top1": 0.99}


def test_summary_line() -> None:
    good, bad = sample_report().artifacts
    assert summary_line(good) == "  ok   onnx         -> version 4"
    assert summary_line(bad).startswith("  FAIL tflite_fp16  (not published) : probs at batch 3")
