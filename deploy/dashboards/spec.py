"""What a dashboard shows, as plain data: titles, units and PromQL. Rendering lives in render.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Grafana's rate window variable; the tests substitute a window of their own.
RATE = "$__rate_interval"
PanelKind = Literal["timeseries", "state"]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str
    kind: PanelKind = "timeseries"


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    per_model: bool
    rows: tuple[Row, ...]

    def panels(self) -> list[Panel]:
        return [panel for row in self.rows for panel in row.panels]
