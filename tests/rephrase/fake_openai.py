"""A local OpenAI-compatible server for tests and benchmarks: answers chat and completion requests with a
deterministic rephrasing, and injects faults on demand.

``FakeOpenAI.faults[text]`` is a list of behaviours consumed one per request about ``text`` (then ``ok``):
``429`` (with Retry-After), ``500``, ``slow`` (answers after the client's timeout), ``badjson`` (a 200 whose body is
not JSON), ``close`` (the connection closed mid-response), ``nochoices`` (a 200 without ``choices``), ``flip`` (left
becomes right), ``refuse``, ``copy``.  ``seeded`` makes the answer depend on the request's seed, as a sampling model
does; ``echo_key`` puts the caller's API key into every answer.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


PREFIXES = ("this is ", "we see ", "there is ", "you can see ", "look for ", "find ", "spot ", "notice ",
            "consider ", "observe ", "meet ", "behold ", "note ", "picture ", "imagine ", "recall ")


def rephrase(text: str) -> str:
    return "this is " + text


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        # headers and body go out in two writes: without this, Nagle's algorithm and delayed ACKs add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, code: int, body: bytes, headers: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode())

    def do_POST(self):
        server: FakeOpenAI = self.server.owner
        length = int(self.headers.get("Content-Length", 0))
        payload = json.loads(self.rfile.read(length) or b"{}")
        auth = self.headers.get("Authorization", "")
        if server.expected_key is not None and auth != f"Bearer {server.expected_key}":
            given = auth.removeprefix("Bearer ")
            msg = {"error": {"message": f"Incorrect API key provided: {given}.", "type": "invalid_request_error",
                             "code": "invalid_api_key"}}
            return self._send(401, json.dumps(msg).encode())
        chat = self.path.endswith("/chat/completions")
        if chat:
            text = payload["messages"][-1]["content"]
        else:
            text = payload["prompt"].rsplit("Description: ", 1)[-1].removesuffix("\nRewrite:")
        with server.lock:
            queue = server.faults.get(text, [])
            mode = queue.pop(0) if queue else "ok"
            server.requests.append((text, mode))
        if server.latency_s:
            time.sleep(server.latency_s)
        if mode == "429":
            return self._send(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "0.05"})
        if mode == "500":
            return self._send(500, b'{"error": {"message": "boom"}}')
        if mode == "slow":
            time.sleep(server.slow_s)
            mode = "ok"
        if mode == "badjson":
            return self._send(200, b'{"choices": [{"text": "unterminated')
        if mode == "close":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "4000")
            self.end_headers()
            self.wfile.write(b'{"id": "x", "choices": [')
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if mode == "nochoices":
            return self._send(200, json.dumps({"id": "x", "object": "chat.completion", "created": 0,
                                               "model": payload["model"], "error": "overloaded"}).encode())
        ok = rephrase(text)
        if server.seeded:            # like a sampling model: the answer depends on the request's seed
            ok = PREFIXES[int(payload.get("seed") or 0) % len(PREFIXES)] + text
        if server.echo_key:          # a misconfigured proxy that puts the caller's key into its answer
            ok += " " + auth.removeprefix("Bearer ")
        answer = {"ok": ok, "flip": "this is " + re.sub(r"\bleft\b", "right", text),
                  "refuse": "I'm sorry, but I can't help with that.", "copy": text}[mode]
        usage = {"prompt_tokens": len(text) // 4 + 20, "completion_tokens": len(answer) // 4,
                 "total_tokens": len(text) // 4 + 20 + len(answer) // 4}
        if chat:
            body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": payload["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                 "finish_reason": "stop"}], "usage": usage}
        else:
            body = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": payload["model"],
                    "choices": [{"index": 0, "text": " " + answer, "finish_reason": "stop", "logprobs": None}],
                    "usage": usage}
        self._send(200, json.dumps(body).encode())


class FakeOpenAI:
    """``with FakeOpenAI() as server: ... server.base_url``"""

    def __init__(self, *, latency_s: float = 0.0, slow_s: float = 2.0, expected_key: str | None = None,
                 seeded: bool = False, echo_key: bool = False):
        self.faults: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.latency_s, self.slow_s, self.expected_key = latency_s, slow_s, expected_key
        self.seeded = seeded
        self.echo_key = echo_key
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 128
        self.httpd.owner = self
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
