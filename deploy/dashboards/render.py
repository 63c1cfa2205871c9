"""Turn dashboard specs into Grafana JSON with grafana-foundation-sdk."""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import prometheus, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos, VariableRefresh

from deploy.dashboards.spec import Dashboard, Panel

_DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
_WIDTH = 24
_HEIGHT = 8
_REF_IDS = "ABCDEFGH"


def _panel(spec: Panel, grid: GridPos) -> timeseries.Panel | statetimeline.Panel:
    panel: timeseries.Panel | statetimeline.Panel
    panel = statetimeline.Panel() if spec.kind == "state" else timeseries.Panel().fill_opacity(10)
    panel.title(spec.title).description(spec.description).unit(spec.unit).datasource(_DATASOURCE).grid_pos(grid)
    for ref_id, query in zip(_REF_IDS, spec.queries, strict=False):
        panel.with_target(
            prometheus.Dataquery().ref_id(ref_id).datasource(_DATASOURCE).expr(query.expr).legend_format(query.legend)
        )
    return panel


def _variables(spec: Dashboard) -> list[Any]:
    variables: list[Any] = [gdash.DatasourceVariable("datasource").label("Data source").type("prometheus")]
    if spec.per_model:
        variables.append(
            gdash.QueryVariable("model").label("Model").datasource(_DATASOURCE)
            .query("label_values(modelgate_requests_total, model)").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        )  # fmt: skip
        variables.append(
            gdash.QueryVariable("version").label("Version").datasource(_DATASOURCE)
            .query('label_values(modelgate_requests_total{model="$model"}, version)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True).include_all(True).all_value(".*")
        )  # fmt: skip
    return variables


def build(spec: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (a dict)."""
    board = (
        gdash.Dashboard(spec.title).uid(spec.uid).description(spec.description).tags(["modelgate"])
        .refresh("30s").time("now-1h", "now").timezone("browser").editable()
    )  # fmt: skip
    for variable in _variables(spec):
        board.with_variable(variable)
    y = 0
    for row in spec.rows:
        board.with_row(gdash.Row(row.title).grid_pos(GridPos(h=1, w=_WIDTH, x=0, y=y)))
        y += 1
        width = _WIDTH // 2
        for index, panel in enumerate(row.panels):
            x = (index % 2) * width
            if index and index % 2 == 0:
                y += _HEIGHT
            board.with_panel(_panel(panel, GridPos(h=_HEIGHT, w=width, x=x, y=y)))
        y += _HEIGHT
    encoded = JSONEncoder(sort_keys=True).encode(board.build())
    result: dict[str, Any] = json.loads(encoded)
    return result


def to_json(spec: Dashboard) -> str:
    """Stable, diff-friendly JSON text of one dashboard."""
    return json.dumps(build(spec), indent=2, sort_keys=True) + "\n"
