"""Prometheus metrics in the text exposition format, without extra dependencies.

Values are per server process (with ``--workers N`` each worker reports its own; scrape each or sum).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

__all__ = ["Metrics", "MetricsMiddleware"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)).replace(chr(10), " ")}"'
        for k, v in pairs
    )
    return "{" + inner + "}"


class Metrics:
    """Counters, gauges (as callables) and one request-duration histogram."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self.help: dict[str, str] = {}
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self._hist: dict[tuple[tuple[str, str], ...], list[float]] = {}

    def inc(self, name: str, amount: float = 1.0, help: str = "", **labels: str) -> None:
        """Add ``amount`` to counter ``name`` with ``labels``."""
        key = tuple(sorted(labels.items()))
        series = self.counters[name]
        series[key] = series.get(key, 0.0) + amount
        if help:
            self.help.setdefault(name, help)

    def gauge(self, name: str, help: str, fn: Callable[[], float]) -> None:
        """Register a gauge read from ``fn`` at scrape time."""
        self.gauges[name] = (help, fn)

    def observe(self, seconds: float, **labels: str) -> None:
        """Record one request duration."""
        key = tuple(sorted(labels.items()))
        h = self._hist.get(key)
        if h is None:
            h = self._hist[key] = [0.0] * (len(_BUCKETS) + 2)  # buckets..., count, sum
        for i, b in enumerate(_BUCKETS):
            if seconds <= b:
                h[i] += 1
        h[-2] += 1
        h[-1] += seconds

    def render(self) -> str:
        """The exposition text."""
        out: list[str] = []
        for name, series in sorted(self.counters.items()):
            out.append(f"# HELP {name} {self.help.get(name, name)}")
            out.append(f"# TYPE {name} counter")
            for key, value in sorted(series.items()):
                out.append(f"{name}{_labels(key)} {value:g}")
        for name, (help_text, fn) in sorted(self.gauges.items()):
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} gauge")
            out.append(f"{name} {float(fn()):g}")
        name = "visioncascade_http_request_duration_seconds"
        out.append(f"# HELP {name} Time from request start to response end.")
        out.append(f"# TYPE {name} histogram")
        for key, h in sorted(self._hist.items()):
            for i, b in enumerate(_BUCKETS):
                out.append(f"{name}_bucket{_labels((*key, ('le', f'{b:g}')))} {h[i]:g}")
            out.append(f"{name}_bucket{_labels((*key, ('le', '+Inf')))} {h[-2]:g}")
            out.append(f"{name}_count{_labels(key)} {h[-2]:g}")
            out.append(f"{name}_sum{_labels(key)} {h[-1]:.6f}")
        return "\n".join(out) + "\n"


class MetricsMiddleware:
    """Pure ASGI middleware: counts requests by method, route template and status, times them."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.inc(
                "visioncascade_http_requests_total",
                help="HTTP requests by method, route and status.",
                method=scope["method"],
                route=route,
                status=str(status["code"]),
            )
            self.metrics.observe(time.perf_counter() - start, route=route)
