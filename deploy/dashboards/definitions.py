"""The two dashboards: one per model (pick model and versions) and an overview across models.

Every metric named here is one the gateway exports (tests/deploy checks it against a real /metrics).
"""

from __future__ import annotations

from deploy.dashboards.spec import RATE, Dashboard, Panel, Query, Row

_SEL = 'model="$model", version=~"$version"'
_QUANTILES = ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))


def _quantiles(metric: str, selector: str, by: str, legend: str) -> tuple[Query, ...]:
    return tuple(
        Query(f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
              f"{name} {legend}")
        for q, name in _QUANTILES
    )  # fmt: skip


def _server_error_ratio(selector: str, by: str) -> str:
    """Server errors over all answered requests; 0 (not absent) while there are requests but no errors."""
    count = "modelgate_request_duration_seconds_count"
    total = f"sum by ({by}) (rate({count}{{{selector}}}[{RATE}]))"
    errors = f'sum by ({by}) (rate({count}{{{selector}, outcome="server_error"}}[{RATE}]))'
    return f"({errors} or {total} * 0) / {total}"


def _events(metric: str, selector: str, by: str) -> str:
    """Events per rate window from a counter, counting the first one of a gateway process too.

    The gateway creates a labelled counter series at its first event, already at 1, so increase()
    (which needs two samples) never shows it; a series absent one window ago counts with its value.
    """
    series = f"{metric}{{{selector}}}" if selector else metric
    return f"sum by ({by}) (({series} unless {series} offset {RATE}) or increase({series}[{RATE}]))"


PER_MODEL = Dashboard(
    uid="modelgate-model",
    title="modelgate / model",
    description="One model's traffic, errors, latency, queue and backend health, per version.",
    per_model=True,
    rows=(
        Row(
            "Traffic",
            (
                Panel(
                    "Request rate",
                    "reqps",
                    (
                        Query(
                            f"sum by (version, protocol) (rate(modelgate_requests_total{{{_SEL}}}[{RATE}]))",
                            "v{{version}} {{protocol}}",
                        ),
                    ),
                    "Answers per second by version and protocol (empty version: refused before one was chosen).",
                ),
                Panel(
                    "Responses by status",
                    "reqps",
                    (Query(f"sum by (status) (rate(modelgate_requests_total{{{_SEL}}}[{RATE}]))", "{{status}}"),),
                    "HTTP status code (REST) or gRPC status name (gRPC) of each answer.",
                ),
                Panel(
                    "Traffic split",
                    "percentunit",
                    (
                        Query(
                            f'sum by (version) (rate(modelgate_requests_total{{model="$model", version!=""}}[{RATE}]))'
                            " / ignoring(version) group_left"
                            f' sum(rate(modelgate_requests_total{{model="$model", version!=""}}[{RATE}]))',
                            "v{{version}}",
                        ),
                    ),
                    "Share of the model's requests served by each version (labels, default version, pins); requests"
                    " refused before a version was chosen carry no version and are left out.",
                ),
                Panel(
                    "Error ratio",
                    "percentunit",
                    (
                        Query(
                            f"sum by (outcome) (rate(modelgate_request_duration_seconds_count"
                            f'{{{_SEL}, outcome!="success"}}[{RATE}])) / ignoring(outcome) group_left'
                            f" sum(rate(modelgate_request_duration_seconds_count{{{_SEL}}}[{RATE}]))",
                            "{{outcome}}",
                        ),
                    ),
                    "Share of requests that were client errors (4xx, INVALID_ARGUMENT...) or server errors (5xx).",
                ),
            ),
        ),
        Row(
            "Latency",
            (
                Panel(
                    "Request latency (successful)",
                    "s",
                    _quantiles(
                        "modelgate_request_duration_seconds", f'{_SEL}, outcome="success"', "version", "v{{version}}"
                    ),
                    "From receiving a request to having its response ready (server side).",
                ),
                Panel(
                    "Backend latency",
                    "s",
                    _quantiles(
                        "modelgate_backend_inference_duration_seconds",
                        _SEL,
                        "version, backend",
                        "v{{version}} {{backend}}",
                    ),
                    "Time inside the backend call only (no decoding or encoding).",
                ),
            ),
        ),
        Row(
            "Dynamic batching",
            (
                Panel(
                    "Batch size",
                    "short",
                    (
                        Query(
                            f"sum by (version) (rate(modelgate_batch_size_sum{{{_SEL}}}[{RATE}]))"
                            f" / sum by (version) (rate(modelgate_batch_size_count{{{_SEL}}}[{RATE}]))",
                            "mean v{{version}}",
                        ),
                        Query(
                            "histogram_quantile(0.95, sum by (version, le) "
                            f"(rate(modelgate_batch_size_bucket{{{_SEL}}}[{RATE}])))",
                            "p95 v{{version}}",
                        ),
                    ),
                    "Rows per backend call made by the dynamic batcher (p95 interpolated in power-of-two buckets);"
                    " 1 while requests arrive one at a time, more when they queue behind a busy backend.",
                ),
                Panel(
                    "Queue time",
                    "s",
                    _quantiles("modelgate_queue_time_seconds", _SEL, "version", "v{{version}}"),
                    "Time a request waited in the dynamic batcher's queue before its batch went to the backend.",
                ),
            ),
        ),
        Row(
            "Capacity and health",
            (
                Panel(
                    "Queue depth",
                    "short",
                    (Query(f"sum by (version) (modelgate_queue_depth{{{_SEL}}})", "v{{version}}"),),
                    "Requests admitted and not yet answered (max_queue_size refuses beyond).",
                ),
                Panel(
                    "Rejected requests",
                    "reqps",
                    (
                        Query(
                            f'sum by (reason) (rate(modelgate_rejected_requests_total{{model="$model"}}[{RATE}]))',
                            "{{reason}}",
                        ),
                    ),
                    "Requests refused by admission control or failed by the backend, by reason.",
                ),
                Panel(
                    "Backend up",
                    "bool",
                    (Query(f"min by (version, backend) (modelgate_backend_up{{{_SEL}}})", "v{{version}} {{backend}}"),),
                    "1 while the version's backend is loaded and passes its health checks (worst replica).",
                    "state",
                ),
                Panel(
                    "Model state",
                    "short",
                    (
                        Query(
                            f"max by (version, state) (modelgate_model_state{{{_SEL}}}) == 1", "v{{version}} {{state}}"
                        ),
                    ),
                    "Current state of each version: LOADING, READY, UNAVAILABLE or UNLOADED.",
                    "state",
                ),
            ),
        ),
        Row(
            "Traffic split and rollouts",
            (
                Panel(
                    "Traffic weight",
                    "percent",
                    (Query(f"avg by (version) (modelgate_traffic_weight{{{_SEL}}})", "v{{version}}"),),
                    "Share of unpinned requests each version is set to get (a traffic split or a rollout step);"
                    " the *Traffic split* panel shows what it actually served.",
                ),
                Panel(
                    "Rollout step",
                    "short",
                    (Query('max(modelgate_rollout_step{model="$model"})', "step"),),
                    "Canary step of the running rollout (1..n); 0 when none runs or during the shadow phase.",
                ),
                Panel(
                    "Deployments and rollbacks",
                    "short",
                    (
                        Query(
                            _events("modelgate_deployments_total", 'model="$model"', "outcome"),
                            "deployment {{outcome}}",
                        ),
                        Query(_events("modelgate_rollbacks_total", 'model="$model"', "reason"), "rollback {{reason}}"),
                    ),
                    "Loads and rollouts finished per rate window by outcome (succeeded, failed, rolled_back,"
                    " aborted), and rollbacks by reason (error_rate, latency, disagreement, aborted).",
                ),
            ),
        ),
    ),
)

OVERVIEW = Dashboard(
    uid="modelgate-overview",
    title="modelgate / overview",
    description="Every model served by the gateway: traffic, errors, latency, saturation and backends.",
    per_model=False,
    rows=(
        Row(
            "Models",
            (
                Panel(
                    "Request rate by model",
                    "reqps",
                    (Query(f"sum by (model) (rate(modelgate_requests_total[{RATE}]))", "{{model}}"),),
                    "Requests answered per second (model _unknown: names the repository does not serve).",
                ),
                Panel(
                    "Server error ratio by model",
                    "percentunit",
                    (Query(_server_error_ratio('model!="_unknown"', "model"), "{{model}}"),),
                    "Share of requests answered with a server error (the SLO burn alerts watch this).",
                ),
                Panel(
                    "p99 latency by model",
                    "s",
                    (
                        Query(
                            f"histogram_quantile(0.99, sum by (model, le) ("
                            f'rate(modelgate_request_duration_seconds_bucket{{model!="_unknown", outcome="success"}}'
                            f"[{RATE}])))",
                            "{{model}}",
                        ),
                    ),
                    "99th percentile of successful requests, server side.",
                ),
                Panel(
                    "Versions by state",
                    "short",
                    (Query("count by (state) (modelgate_model_state == 1)", "{{state}}"),),
                    "How many model versions are in each state, over all replicas.",
                ),
                Panel(
                    "Deployments and rollbacks by model",
                    "short",
                    (
                        Query(_events("modelgate_deployments_total", "", "model, outcome"), "{{model}} {{outcome}}"),
                        Query(_events("modelgate_rollbacks_total", "", "model"), "{{model}} rolled back"),
                    ),
                    "Loads and rollouts finished per rate window by model and outcome, and rollbacks per model.",
                ),
            ),
        ),
        Row(
            "Saturation",
            (
                Panel(
                    "In-flight requests",
                    "short",
                    (Query("sum by (protocol) (modelgate_inflight_requests)", "{{protocol}}"),),
                    "Requests being handled now (the HPA example scales on this per pod).",
                ),
                Panel(
                    "Queue depth by model",
                    "short",
                    (Query("sum by (model) (modelgate_queue_depth)", "{{model}}"),),
                    "Requests admitted and not yet answered.",
                ),
                Panel(
                    "Rejected requests",
                    "reqps",
                    (
                        Query(
                            f"sum by (model, reason) (rate(modelgate_rejected_requests_total[{RATE}]))",
                            "{{model}} {{reason}}",
                        ),
                    ),
                    "Refused or failed before an answer from the backend, by model and reason.",
                ),
            ),
        ),
        Row(
            "Backends",
            (
                Panel(
                    "Backends down",
                    "short",
                    (
                        Query(
                            "count by (backend) (modelgate_backend_up == 0 unless on (job, instance, model, version)"
                            ' modelgate_model_state{state="UNLOADED"} == 1)'
                            " or count by (backend) (modelgate_backend_up) * 0",
                            "{{backend}}",
                        ),
                    ),
                    "Model versions whose backend failed to load or fails its health checks, per backend kind"
                    " (versions unloaded on purpose are left out).",
                ),
                Panel(
                    "Circuit breakers open",
                    "bool",
                    (Query("max by (backend, endpoint) (modelgate_backend_circuit_open)", "{{backend}} {{endpoint}}"),),
                    "1 while a remote endpoint's breaker is open (requests fail fast).",
                    "state",
                ),
                Panel(
                    "Backend retries",
                    "ops",
                    (
                        Query(
                            f"sum by (backend, endpoint) (rate(modelgate_backend_retries_total[{RATE}]))",
                            "{{backend}} {{endpoint}}",
                        ),
                    ),
                    "Remote calls tried again after a connection failure.",
                ),
                Panel(
                    "Gateway replicas by release",
                    "short",
                    (Query("count by (version) (modelgate_build_info)", "{{version}}"),),
                    "Scraped gateway processes per modelgate release (a rolling update shows two).",
                ),
            ),
        ),
    ),
)

DASHBOARDS = (PER_MODEL, OVERVIEW)
