"""Triplets from any OpenAI-compatible chat-completions server (vLLM, TGI, llama.cpp, Ollama, the hosted API).

Requests run in a bounded thread pool over the standard library's HTTP client. 429, 5xx, timeouts and
dropped connections are retried with exponential backoff and full jitter, waiting at least what a
`Retry-After` header asks; other HTTP errors are not retried. `max_requests` caps the HTTP requests the
backend sends in its lifetime (retries included); requests beyond it come back `not_sent`.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from .chat import NOT_SENT, ChatBackend, Completion

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (OSError, http.client.HTTPException)  # timeouts, refused or dropped connections, bad replies
MAX_RETRY_AFTER = 300.0
"""The longest wait a Retry-After header can ask for, in seconds."""


class _Transient(Exception):
    """A failed request worth retrying, after at least `wait` seconds."""

    def __init__(self, detail: str, wait: float = 0.0) -> None:
        super().__init__(detail)
        self.wait = wait


def retry_after_seconds(value: str | None) -> float:
    """Seconds asked by a Retry-After header (seconds or an HTTP date), at most `MAX_RETRY_AFTER`; 0 when absent
    or unreadable."""
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return 0.0
        if when.tzinfo is None:  # "-0000": UTC, RFC 5322
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(0.0, seconds), MAX_RETRY_AFTER) if seconds == seconds else 0.0


def answer_text(payload: object) -> str:
    """The answer of a chat-completions response body (parsed JSON); raises ValueError when it has none."""
    try:
        content = payload["choices"][0]["message"]["content"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        content = None
    if not isinstance(content, str):
        raise ValueError("the answer has no choices[0].message.content string")
    return content


def parse_answer(body: bytes, url: str) -> str:
    """The answer text of the HTTP response `body` from `url`; raises ValueError naming `url` otherwise."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{url} answered with a body that is not JSON: {' '.join(str(err).split())[:200]}") from err
    try:
        return answer_text(payload)
    except ValueError as err:
        raise ValueError(f"{url}: {err}") from err


class OpenAIBackend(ChatBackend):
    """Writes triplets with a chat model served behind an OpenAI-compatible `/chat/completions` endpoint.

    Args:
        model: the served model name.
        base_url: the API root, e.g. `http://localhost:8000/v1` for vLLM (default: the hosted OpenAI API).
        api_key: bearer token (default: `$OPENAI_API_KEY`; none is sent when empty).
        concurrency: requests in flight at once.
        max_requests: cap on HTTP requests sent, retries included (default: no cap).
        max_retries: retries of one request after a 429, 5xx, timeout or dropped connection.
        timeout: seconds allowed per HTTP request.
        backoff: first backoff in seconds; attempt n waits a random time up to `backoff * 2**n`, at most `max_backoff`.
        json_mode: ask for `response_format={"type": "json_object"}` (servers that support it answer JSON only).
        The other arguments are those of [`ChatBackend`].
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        concurrency: int = 8,
        max_requests: int | None = None,
        max_retries: int = 5,
        timeout: float = 60.0,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        json_mode: bool = False,
        **chat_options: Any,
    ) -> None:
        super().__init__(model, **chat_options)
        if concurrency < 1 or max_retries < 0 or timeout <= 0 or (max_requests is not None and max_requests < 0):
            raise ValueError(
                "need concurrency >= 1, max_retries >= 0, timeout > 0 and max_requests >= 0, got "
                f"{concurrency}, {max_retries}, {timeout}, {max_requests}"
            )
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = os.environ.get("OPENAI_API_KEY") if api_key is None else api_key
        self.concurrency = concurrency
        self.max_requests = max_requests
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.json_mode = json_mode
        self._lock = threading.Lock()
        self._sent = 0

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "json_mode": self.json_mode}

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far, retries included."""
        return self._sent

    def _take_request(self) -> bool:
        with self._lock:
            if self.max_requests is not None and self._sent >= self.max_requests:
                return False
            self._sent += 1
            return True

    def _body(self, messages: list[dict[str, str]], seed: int) -> bytes:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_new_tokens,
            "seed": seed,
        }
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        return json.dumps(body).encode("utf-8")

    def _post(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as err:
            detail = f"HTTP {err.code} from {self.url}: {' '.join(err.read(300).decode('utf-8', 'replace').split())}"
            if err.code in RETRY_STATUSES:
                raise _Transient(detail, retry_after_seconds(err.headers.get("Retry-After"))) from err
            raise ValueError(detail) from err
        except TRANSIENT_ERRORS as err:
            raise _Transient(f"{type(err).__name__} from {self.url}: {err}") from err
        return parse_answer(payload, self.url)

    def _complete_one(self, messages: list[dict[str, str]], seed: int) -> Completion:
        body = self._body(messages, seed)
        detail = ""
        for attempt in range(self.max_retries + 1):
            if not self._take_request():
                return Completion(None, NOT_SENT, f"max_requests={self.max_requests} reached")
            try:
                return Completion(self._post(body))
            except ValueError as err:
                return Completion(None, "request_failed", str(err))
            except _Transient as err:
                detail = str(err)
                if attempt < self.max_retries:
                    jitter = random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))
                    time.sleep(max(err.wait, jitter))
        return Completion(None, "request_failed", f"{self.max_retries + 1} attempts failed, the last: {detail}")

    def complete(self, conversations: Sequence[list[dict[str, str]]], seeds: Sequence[int]) -> list[Completion]:
        if not conversations:
            return []
        with ThreadPoolExecutor(min(self.concurrency, len(conversations)), thread_name_prefix="scot-openai") as pool:
            return list(pool.map(self._complete_one, conversations, seeds))


__all__ = ["DEFAULT_BASE_URL", "MAX_RETRY_AFTER", "OpenAIBackend", "answer_text", "parse_answer", "retry_after_seconds"]
