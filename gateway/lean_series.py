"""Lock-free Prometheus series for the request path (counter, gauge, histogram).

prometheus_client takes a ``threading.Lock`` on every update, walks a histogram's buckets one by
one, and with ``--workers`` writes every update into an mmap'ed file: 1–3 µs per update in one
process, several more with workers, and a V2 request makes about seven. The series the request path
updates use these classes instead: a child is a plain Python object whose update is a float add (a
histogram finds its bucket with :func:`bisect.bisect_left`), and each family is a prometheus_client
``Collector`` registered in the same registry, exposed with the same name, help, type, labels,
buckets and ``_created`` samples as prometheus_client's own classes would expose.

**One thread only.** Updates are not atomic: every update must come from the thread that runs the
event loop (the protocols' envelopes, the data plane and the batcher all do). A scrape from that
same thread (the metrics port is served by the event loop) sees every update made before it.

**Several processes** (``--workers``): nothing is written on update. :meth:`LeanFamily.flush` adds
what changed since the previous flush to prometheus_client's multiprocess values of this process
(the same mmap'ed files, under the same keys, that prometheus_client's own Counter, Gauge and
Histogram would have written), so ``MultiProcessCollector`` sums them as before. The gateway flushes
every :data:`gateway.metrics.FLUSH_SECONDS`, before every scrape it answers, and at shutdown.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from prometheus_client import CollectorRegistry, values
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

#: prometheus_client's own rule for ``_created`` samples (read once, as prometheus_client does at import).
_CREATED: bool = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in ("true", "1", "t")


def _le(bound: float) -> str:
    """A bucket's ``le`` label value, as prometheus_client writes it."""
    return floatToGoString(bound)  # type: ignore[no-untyped-call,no-any-return]


def _shared_value(kind: str, name: str, sample: str, labelnames: Sequence[str], labelvalues: Sequence[str],
                  documentation: str, mode: str = "") -> Any:  # fmt: skip
    """The value prometheus_client itself would create for this sample (an mmap'ed one in multiprocess mode)."""
    return values.ValueClass(
        kind, name, sample, tuple(labelnames), tuple(labelvalues), documentation, multiprocess_mode=mode
    )


class CounterChild:
    """One counter series: ``inc()`` is a float add."""

    __slots__ = ("_flushed", "_shared", "created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()
        self._flushed = 0.0
        self._shared: Any = None

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (not checked: callers only ever add a count)."""
        self.value += amount

    def flush(self, family: LeanFamily[Any], labelvalues: Sequence[str]) -> None:
        delta = self.value - self._flushed
        if not delta:
            return
        if self._shared is None:
            self._shared = _shared_value("counter", family.name, family.name + "_total", family.labelnames,
                                         labelvalues, family.documentation)  # fmt: skip
        self._shared.inc(delta)
        self._flushed += delta


class GaugeChild:
    """One gauge series updated with ``inc()`` / ``dec()``."""

    __slots__ = ("_flushed", "_shared", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self._flushed: float | None = None
        self._shared: Any = None

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def flush(self, family: LeanFamily[Any], labelvalues: Sequence[str]) -> None:
        value = self.value
        if value == self._flushed:
            return
        if self._shared is None:
            self._shared = _shared_value("gauge", family.name, family.name, family.labelnames, labelvalues,
                                         family.documentation, family.multiprocess_mode)  # fmt: skip
        self._shared.set(value)
        self._flushed = value


class HistogramChild:
    """One histogram series: per-bucket counts (not cumulative) and the sum of the observations."""

    __slots__ = ("_flushed", "_flushed_sum", "_shared", "bounds", "counts", "created", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0.0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()
        self._flushed = [0.0] * len(bounds)
        self._flushed_sum = 0.0
        self._shared: list[Any] | None = None

    def observe(self, amount: float) -> None:
        """Count ``amount`` in the first bucket whose upper bound is >= it (Prometheus ``le``: inclusive).

        (A NaN, which no caller records, would land in the first bucket; prometheus_client counts it in none.)
        """
        self.counts[bisect_left(self.bounds, amount)] += 1.0
        self.sum += amount

    def flush(self, family: LeanFamily[Any], labelvalues: Sequence[str]) -> None:
        counts = self.counts
        if counts == self._flushed and self.sum == self._flushed_sum:
            return
        shared = self._shared
        if shared is None:
            shared = self._shared = self._shared_values(family, labelvalues)
        for i, count in enumerate(counts):
            delta = count - self._flushed[i]
            if delta:
                shared[i].inc(delta)
                self._flushed[i] = count
        delta_sum = self.sum - self._flushed_sum
        if delta_sum:
            shared[-1].inc(delta_sum)
            self._flushed_sum += delta_sum

    def _shared_values(self, family: LeanFamily[Any], labelvalues: Sequence[str]) -> list[Any]:
        """One value per bucket (labelled ``le``), then the sum: prometheus_client's multiprocess layout."""
        name, doc, labelnames = family.name, family.documentation, tuple(family.labelnames)
        buckets = [
            _shared_value("histogram", name, name + "_bucket", (*labelnames, "le"), (*labelvalues,
                          _le(bound)), doc)
            for bound in self.bounds
        ]  # fmt: skip
        return [*buckets, _shared_value("histogram", name, name + "_sum", labelnames, labelvalues, doc)]


Child = TypeVar("Child", CounterChild, GaugeChild, HistogramChild)


class LeanFamily(Collector, Generic[Child]):
    """The series of one metric, by label values, exposed through the registry it is registered in."""

    kind: ClassVar[str]
    #: How the workers' values combine (gauges only; see prometheus_client's ``Gauge``).
    multiprocess_mode: str = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Child] = {}
        registry.register(self)

    def labels(self, *labelvalues: str) -> Child:
        """The series for these label values (created at zero on first use), as prometheus_client's ``labels``."""
        child = self._children.get(labelvalues)
        if child is None:
            if len(labelvalues) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected {len(self.labelnames)} label values, got {len(labelvalues)}")
            child = self._children[labelvalues] = self._new_child()
        return child

    def _new_child(self) -> Child:
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        return [Metric(self.name, self.documentation, self.kind)]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for labelvalues, child in list(self._children.items()):
            self._add(family, labelvalues, child)
        return [family]

    def _family(self) -> Metric:
        raise NotImplementedError

    def _add(self, family: Any, labelvalues: tuple[str, ...], child: Child) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Multiprocess mode: add what changed since the last flush to this process's shared values."""
        for labelvalues, child in list(self._children.items()):
            child.flush(self, labelvalues)


class LeanCounter(LeanFamily[CounterChild]):
    """A counter family (``name`` without ``_total``, as for prometheus_client's ``Counter``)."""

    kind = "counter"

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def _family(self) -> Metric:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Any, labelvalues: tuple[str, ...], child: CounterChild) -> None:
        family.add_metric(labelvalues, child.value, child.created if _CREATED else None)


class LeanGauge(LeanFamily[GaugeChild]):
    """A gauge family; ``multiprocess_mode`` as for prometheus_client's ``Gauge`` (how workers combine)."""

    kind = "gauge"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry,
                 multiprocess_mode: str = "all") -> None:  # fmt: skip
        super().__init__(name, documentation, labelnames, registry)
        self.multiprocess_mode = multiprocess_mode

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def _family(self) -> Metric:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Any, labelvalues: tuple[str, ...], child: GaugeChild) -> None:
        family.add_metric(labelvalues, child.value)


class LeanHistogram(LeanFamily[HistogramChild]):
    """A histogram family with fixed ``buckets`` (upper bounds; ``+Inf`` is added as prometheus_client does)."""

    kind = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry,
                 buckets: Sequence[float]) -> None:  # fmt: skip
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds) or not bounds or bounds[0] < 0:
            raise ValueError(f"{name}: buckets must be sorted and not negative")
        if bounds[-1] != INF:
            bounds.append(INF)
        self.bounds: tuple[float, ...] = tuple(bounds)
        self._names = tuple(_le(b) for b in bounds)
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def _family(self) -> Metric:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Any, labelvalues: tuple[str, ...], child: HistogramChild) -> None:
        cumulative, acc = [], 0.0
        for name, count in zip(self._names, child.counts, strict=True):
            acc += count
            cumulative.append((name, acc))
        family.add_metric(labelvalues, cumulative, child.sum)
        if _CREATED:
            family.add_sample(self.name + "_created", dict(zip(self.labelnames, labelvalues, strict=True)),
                              child.created)  # fmt: skip
