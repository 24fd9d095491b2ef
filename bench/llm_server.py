"""A small OpenAI-compatible chat-completions server on 127.0.0.1, for benchmarks and tests of the openai backend.

It answers each request with a triplet derived from the request's caption and kind of change (so the same
request always gets the same answer) after a fixed latency. Its first answers can be scripted to fail:
`malformed` (an answer that is not JSON), `fenced` (the JSON in a ```json fence amid prose), `unchanged`
(the modified caption repeats the caption), `429` (with Retry-After), `500`, `hang` (answer after the
client's timeout). Captions containing `#bad-json` always get a malformed answer.

    with FakeLLMServer(latency=0.05) as server:
        backend = OpenAIBackend("fake", base_url=server.url)
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BEHAVIOURS = ("good", "malformed", "fenced", "unchanged", "429", "500", "hang")
BAD_JSON_MARK = "#bad-json"
_USER = re.compile(r"Caption: (.*)\nKind of change: (.*)", re.DOTALL)


def answer_for(caption: str, kind: str) -> dict:
    """The triplet the server answers for `caption` and `kind`."""
    return {
        "modification": f"please {kind}",
        "modified_caption": f"{caption} after we {kind}",
        "hard_negatives": [f"{caption} before we {kind}", f"{caption} where nobody did {kind}", f"{caption} twice"],
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


class FakeLLMServer:
    """The server, run in a background thread while the `with` block lasts.

    Args:
        latency: seconds each answer takes.
        script: behaviours (see `BEHAVIOURS`) of the first requests, in arrival order; then `good`.
        retry_after: the Retry-After header value of `429` answers.
        hang_seconds: how long a `hang` answer takes.
        api_key: when set, requests without `Authorization: Bearer <api_key>` get 401.
    """

    def __init__(
        self,
        latency: float = 0.0,
        script: Iterable[str] = (),
        *,
        retry_after: str = "0",
        hang_seconds: float = 1.0,
        api_key: str | None = None,
    ) -> None:
        self.script = list(script)
        unknown = sorted(set(self.script) - set(BEHAVIOURS))
        if unknown:
            raise ValueError(f"unknown behaviours {unknown}; known: {BEHAVIOURS}")
        self.latency = latency
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self.api_key = api_key
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.log: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        """The API root to give as `base_url`."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _next_behaviour(self) -> str:
        with self._lock:
            behaviour = self.script[self.requests] if self.requests < len(self.script) else "good"
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.log.append((time.monotonic(), behaviour))
        return behaviour

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _content(self, behaviour: str, body: dict) -> str:
        match = _USER.search(body["messages"][-1]["content"])
        caption, kind = (match.group(1), match.group(2)) if match else ("", "")
        answer = answer_for(caption, kind)
        if behaviour == "malformed" or BAD_JSON_MARK in caption:
            return "Sure! Here is the triplet: {modification: " + kind
        if behaviour == "unchanged":
            answer["modified_caption"] = caption
        text = json.dumps(answer)
        return f"Here you go:\n```json\n{text}\n```\nEnjoy." if behaviour == "fenced" else text

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                behaviour = server._next_behaviour()
                try:
                    self._answer(behaviour)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    server._done()

            def _answer(self, behaviour: str) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                time.sleep(server.hang_seconds if behaviour == "hang" else server.latency)
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    return self._send(401, {"error": {"message": "invalid api key"}})
                if self.path != "/v1/chat/completions" or not body.get("model") or not body.get("messages"):
                    return self._send(400, {"error": {"message": "expected a chat completion request"}})
                if behaviour == "429":
                    return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": server.retry_after})
                if behaviour == "500":
                    return self._send(500, {"error": {"message": "internal error"}})
                message = {"role": "assistant", "content": server._content(behaviour, body)}
                self._send(200, {"object": "chat.completion", "model": body["model"], "choices": [{"index": 0, "message": message}]})

        return Handler


__all__ = ["BAD_JSON_MARK", "BEHAVIOURS", "FakeLLMServer", "answer_for"]
