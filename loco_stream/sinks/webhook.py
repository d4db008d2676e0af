"""Webhooks: every record POSTed as JSON to a URL, in order, retried until the receiver takes it.

One thread sends the records one at a time, oldest first. A connection error, a timeout, a 5xx,
408 or 429 answer is retried after a backoff that doubles from BACKOFF_S to MAX_BACKOFF_S; any
other 4xx means the receiver will never take that record: it is counted as rejected and the
next one goes. At most ``queue_limit`` records wait: while the receiver stays down longer than
that, the oldest are dropped and counted (stats ``sinks.webhook.dropped``). Each POST carries
``X-Loco-Sequence`` (1, 2, ... per run: a receiver can tell a retried record from a new one) and,
if ``LOCO_WEBHOOK_AUTHORIZATION`` is set, that ``Authorization`` header.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections import deque
from urllib.parse import urlsplit

from .base import Sink, log

QUEUE_LIMIT = 1000  # records waiting for the receiver
TIMEOUT_S = 5.0  # one POST
BACKOFF_S, MAX_BACKOFF_S = 0.5, 30.0  # between tries while the receiver fails
FLUSH_TIMEOUT_S = 5.0  # close() tries this long more to deliver what waits
RETRIED_STATUS = (408, 429)  # 4xx answers that mean "later", not "never"


class WebhookSink(Sink):
    """POSTs each record as JSON to ``url`` (http or https)."""

    name = "webhook"

    def __init__(self, url: str, queue_limit: int = QUEUE_LIMIT) -> None:
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018  (a port that is not a number raises here)
        except ValueError:
            parts = parts._replace(netloc="")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"--webhook '{url}' is not an http(s) URL: give one like "
                "http://127.0.0.1:8000/events or https://example.org/hook"
            )
        self.url = url
        self._pending: deque[tuple[int, bytes]] = deque()  # (sequence, body)
        self._queue_limit = queue_limit
        self._changed = threading.Condition()
        self._sequence = 0
        self._delivered = 0
        self._retries = 0
        self._rejected = 0
        self._dropped = 0
        self._closing = False
        self._failing_since: int | None = None  # sequence of the record that began an outage
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        self._thread = threading.Thread(target=self._send_all, name="loco-webhook", daemon=True)
        self._thread.start()

    def publish(self, stream: str, record: dict) -> None:
        body = json.dumps(record).encode()
        with self._changed:
            self._sequence += 1
            if len(self._pending) >= self._queue_limit:
                self._pending.popleft()
                self._dropped += 1
            self._pending.append((self._sequence, body))
            self._changed.notify_all()

    def counters(self) -> dict:
        with self._changed:
            return {
                "delivered": self._delivered,
                "waiting": len(self._pending),
                "retries": self._retries,
                "rejected": self._rejected,
                "dropped": self._dropped,
            }

    def close(self) -> None:
        if self._thread is None:
            return
        with self._changed:
            self._changed.wait_for(lambda: not self._pending, FLUSH_TIMEOUT_S)
            self._closing = True
            self._changed.notify_all()
        self._thread.join(TIMEOUT_S + 1)
        self._thread = None
        counts = self.counters()
        lost = counts["waiting"] + counts["dropped"]
        if lost:
            log.warning(f"webhook: {lost} records were not delivered to {self.url}")

    def _send_all(self) -> None:
        backoff = BACKOFF_S
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._closing)
                if self._closing:
                    return
                sequence, body = self._pending[0]
            outcome = self._post(sequence, body)
            with self._changed:
                if outcome != "retry":
                    if self._pending and self._pending[0][0] == sequence:  # not dropped meanwhile
                        self._pending.popleft()
                    self._delivered += outcome == "delivered"
                    self._rejected += outcome == "rejected"
                    backoff = BACKOFF_S
                    continue
                self._retries += 1
                self._changed.wait_for(lambda: self._closing, backoff)
                backoff = min(2 * backoff, MAX_BACKOFF_S)

    def _post(self, sequence: int, body: bytes) -> str:
        """One try: "delivered", "rejected" (never to be taken) or "retry"."""
        headers = {"Content-Type": "application/json", "X-Loco-Sequence": str(sequence)}
        authorization = os.environ.get("LOCO_WEBHOOK_AUTHORIZATION")
        if authorization:
            headers["Authorization"] = authorization
        request = urllib.request.Request(self.url, body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                answer.read()
        except urllib.error.HTTPError as error:
            if 400 <= error.code < 500 and error.code not in RETRIED_STATUS:
                log.warning(f"webhook: {self.url} refused a record ({error.code} {error.reason})")
                return "rejected"
            return self._failed(sequence, f"{error.code} {error.reason}")
        except (OSError, ValueError) as error:  # URLError, timeouts, resets are OSErrors
            reason = getattr(error, "reason", None) or error
            return self._failed(sequence, str(reason))
        if self._failing_since is not None:
            log.warning(f"webhook: {self.url} takes records again")
            self._failing_since = None
        return "delivered"

    def _failed(self, sequence: int, reason: str) -> str:
        if self._failing_since is None:
            self._failing_since = sequence
            log.warning(
                f"webhook: cannot deliver to {self.url} ({reason}); retrying with backoff, "
                f"detection goes on (at most {self._queue_limit} records wait)"
            )
        return "retry"
