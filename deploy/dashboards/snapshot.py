"""Render a dashboard's panels to a PNG from a live Prometheus (Grafana is not installable here).

    python -m deploy.dashboards.snapshot --prometheus http://127.0.0.1:9090 --model digits_mlp \
        --minutes 5 --out docs/img

Each panel's queries run as range queries (Grafana's variables filled in: the model, every version, a
rate window) and are drawn with matplotlib, two panels a row, as docs/deploy.md shows them.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from pathlib import Path
from typing import Any

import httpx

from deploy.dashboards.definitions import DASHBOARDS
from deploy.dashboards.spec import RATE, Dashboard, Panel

_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def fill(expr: str, model: str, rate_window: str) -> str:
    return expr.replace(RATE, rate_window).replace("$model", model).replace("$version", ".*")


def legend_of(template: str, labels: dict[str, str]) -> str:
    """Grafana's legend format: ``{{label}}`` replaced by the series' label value."""
    return _LEGEND_LABEL.sub(lambda match: labels.get(match.group(1), ""), template).strip()


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": step}
    body = httpx.get(f"{prometheus}/api/v1/query_range", params=params, timeout=30).json()
    if body.get("status") != "success":
        raise ValueError(f"{expr}: {body.get('error')}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _draw(axes: Any, panel: Panel, series: list[tuple[str, list[float], list[float]]]) -> None:
    axes.set_title(panel.title, fontsize=9)
    axes.tick_params(labelsize=7)
    for legend, xs, ys in series:
        axes.plot(xs, ys, linewidth=1.2, label=legend)
    if series:
        axes.legend(fontsize=6, loc="upper left", frameon=False)
    else:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes, fontsize=8)
    axes.set_ylabel({"s": "seconds", "reqps": "req/s", "percentunit": "ratio", "ops": "ops/s"}.get(panel.unit, ""),
                    fontsize=7)  # fmt: skip
    axes.grid(alpha=0.3)


def render(spec: Dashboard, prometheus: str, model: str, minutes: float, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = time.time()
    start = end - minutes * 60
    step = max(1.0, minutes * 60 / 200)
    panels = spec.panels()
    rows = math.ceil(len(panels) / 2)
    figure, grid = plt.subplots(rows, 2, figsize=(10, 2.1 * rows), squeeze=False)
    for index, panel in enumerate(panels):
        series = []
        for query in panel.queries:
            for item in query_range(prometheus, fill(query.expr, model, "30s"), start, end, step):
                legend = legend_of(query.legend, item["metric"])
                points = [(float(t) - end, float(v)) for t, v in item["values"] if not math.isnan(float(v))]
                series.append((legend, [p[0] / 60 for p in points], [p[1] for p in points]))
        _draw(grid[index // 2][index % 2], panel, series)
    for index in range(len(panels), rows * 2):
        grid[index // 2][index % 2].axis("off")
    title = f"{spec.title} ({model})" if spec.per_model else spec.title
    figure.suptitle(f"{title}: last {minutes:g} min (x: minutes before now)", fontsize=10)
    figure.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{spec.uid}.png"
    figure.savefig(path, dpi=72)
    plt.close(figure)
    _shrink(path)
    return path


def _shrink(path: Path) -> None:
    """A 64-colour palette PNG: a third of the size, the same look for line charts."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=64)
    small.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.dashboards.snapshot", description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    parser.add_argument("--model", default="digits_mlp", help="model for the per-model dashboard")
    parser.add_argument("--minutes", type=float, default=5, help="time range to draw")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="folder for <dashboard uid>.png")
    args = parser.parse_args(argv)
    for spec in DASHBOARDS:
        print(render(spec, args.prometheus.rstrip("/"), args.model, args.minutes, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
