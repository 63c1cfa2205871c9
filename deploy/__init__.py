"""Deployment artefacts for modelgate: images, Kubernetes, Prometheus rules and Grafana dashboards."""
