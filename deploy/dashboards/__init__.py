"""Grafana dashboards for modelgate, generated with grafana-foundation-sdk (``python -m deploy.dashboards``)."""
