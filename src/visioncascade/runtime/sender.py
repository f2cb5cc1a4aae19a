"""Posting cascade events to the API without ever blocking the frame loop.

:class:`EventSender` owns a bounded queue and a background thread. The frame loop calls :meth:`offer`,
which applies the posting policy (post when the decision changes, else at most every ``min_interval_s``)
and returns at once. The thread posts each event with its idempotency id, retrying with exponential
backoff while the API is unreachable or answers 5xx/429; a retried event is never stored twice because the
API deduplicates by ``event_id``. Up to the queue bound nothing is lost; beyond it the oldest event is
dropped and counted.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "EventPoster",
    "EventSender",
    "HttpEventPoster",
    "PermanentPostError",
    "PostPolicy",
    "SenderStats",
    "TransientPostError",
]


class TransientPostError(Exception):
    """The API could not take the event now (connection error, timeout, 5xx, 429): retry later."""


class PermanentPostError(Exception):
    """The API rejected the event (4xx other than 429): retrying would not help."""


class EventPoster(Protocol):
    """Posts one event and returns the API's answer (``{event_id, output, rule}``)."""

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class SenderStats:
    """Counters of an :class:`EventSender` (all monotonic except ``pending`` and ``api_up``)."""

    produced: int = 0
    skipped: int = 0
    queued: int = 0
    posted: int = 0
    dropped: int = 0
    rejected: int = 0
    retries: int = 0
    pending: int = 0
    api_up: bool | None = None
    last_error: str | None = None
    last_rejection: str | None = None  # why the API refused the last rejected event (e.g. 401 and its reason)
    last_answer: dict[str, Any] | None = None
    answers: list[dict[str, Any]] = field(default_factory=list)


class PostPolicy:
    """Which events to post: a new decision ``key`` always, the same key at most every ``min_interval_s``.

    Shared by :class:`EventSender` and the API's live camera page, so both store the same events.
    """

    def __init__(self, min_interval_s: float = 1.0) -> None:
        self.min_interval_s = min_interval_s
        self._last_key: tuple | None = None
        self._last_time = -float("inf")

    def admit(self, key: tuple | None, now: float | None = None) -> bool:
        """True (and remembered) when an event with ``key`` at ``now`` (monotonic seconds) should be posted."""
        now = time.monotonic() if now is None else now
        if key == self._last_key and now - self._last_time < self.min_interval_s:
            return False
        self._last_key, self._last_time = key, now
        return True


class EventSender:
    """Background, bounded, retrying poster of cascade events."""

    def __init__(
        self,
        post: EventPoster,
        *,
        queue_size: int = 1000,
        min_interval_s: float = 1.0,
        device_id: str | None = None,
        session_id: str | None = None,
        initial_backoff_s: float = 0.05,
        max_backoff_s: float = 5.0,
        keep_answers: int = 100,
        on_answer: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    ):
        self._post = post
        self.queue_size = queue_size
        self.policy = PostPolicy(min_interval_s)
        self.device_id = device_id or f"visioncascade-{uuid.getnode():012x}"
        self.session_id = session_id or str(uuid.uuid4())
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.keep_answers = keep_answers
        self.on_answer = on_answer
        self.stats = SenderStats()
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="event-sender", daemon=True)
        self._thread.start()

    # -- frame-loop side -------------------------------------------------------------------------------
    def offer(self, event: dict[str, Any], key: tuple | None = None) -> bool:
        """Consider ``event`` for posting; returns True when it was queued. Never blocks on the network.

        ``key`` identifies the decision (e.g. context and labels): a new key is always posted, the same key
        at most every ``min_interval_s``.
        """
        with self._cond:
            self.stats.produced += 1
            if not self.policy.admit(key):
                self.stats.skipped += 1
                return False
            payload = {"device_id": self.device_id, "session_id": self.session_id, **event}
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self.stats.dropped += 1
            self._queue.append(payload)
            self.stats.queued += 1
            self.stats.pending = len(self._queue)
            self._cond.notify()
        return True

    # -- background side -------------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = self.initial_backoff_s
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue and self._closing:
                    return
                event = self._queue[0]
            try:
                answer = self._post(event)
            except PermanentPostError as exc:
                with self._cond:
                    self._remove(event)
                    self.stats.rejected += 1
                    self.stats.last_error = self.stats.last_rejection = str(exc)
                continue
            except Exception as exc:
                # TransientPostError, and anything else the poster raises (a 2xx reply that is not JSON,
                # an HTTP client error of another kind): recorded and retried, never the end of the thread.
                # The API deduplicates by event_id, so a retry of a stored event stores nothing twice.
                with self._cond:
                    self.stats.api_up = False
                    self.stats.last_error = (
                        str(exc) if isinstance(exc, TransientPostError) else f"{type(exc).__name__}: {exc}"
                    )
                    self.stats.retries += 1
                    if self._closing:  # close() already waited for the flush; give up
                        return
                    # The whole backoff, whatever offer() notifies meanwhile; only close() cuts it short.
                    deadline = time.monotonic() + backoff
                    while not self._closing and (left := deadline - time.monotonic()) > 0:
                        self._cond.wait(timeout=left)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            backoff = self.initial_backoff_s
            with self._cond:
                self._remove(event)
                self.stats.posted += 1
                self.stats.api_up = True
                self.stats.last_answer = answer
                self.stats.answers.append(answer)
                del self.stats.answers[: -self.keep_answers]
            if self.on_answer is not None:
                try:
                    self.on_answer(event, answer)
                except Exception as exc:  # the event is stored; a failing callback must not stop the sender
                    with self._cond:
                        self.stats.last_error = f"on_answer callback failed: {type(exc).__name__}: {exc}"

    def _remove(self, event: dict[str, Any]) -> None:
        if self._queue and self._queue[0] is event:
            self._queue.popleft()
        self.stats.pending = len(self._queue)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                if not self._queue:
                    return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 10.0) -> SenderStats:
        """Post what is queued (waiting up to ``timeout``), then stop the thread; returns the final stats."""
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=max(1.0, self.max_backoff_s + 1))
        with self._cond:
            self.stats.pending = len(self._queue)
        return self.stats


class HttpEventPoster:
    """Posts events with :class:`visioncascade.client.Client` (one try; :class:`EventSender` retries).

    Connection errors, timeouts, 429 and 5xx become :class:`TransientPostError`; other refusals
    :class:`PermanentPostError`.
    """

    _TRANSIENT = frozenset({429, 500, 502, 503, 504})

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 5.0):
        from visioncascade.client import Client

        self._client = Client(url, api_key, timeout=timeout_s, retries=0)

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        from visioncascade.client import ApiRequestError

        try:
            answer = self._client.send(event)
        except ApiRequestError as exc:
            if exc.status is None or exc.status in self._TRANSIENT:
                raise TransientPostError(str(exc)) from exc
            raise PermanentPostError(str(exc)) from exc
        return answer or {}

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()
