"""A tiny OpenAI-compatible chat server for tests (stdlib only, 127.0.0.1, random port).

    with FakeOpenAIServer() as server:
        server.script = [("status", 429, {"Retry-After": "0"}), ("ok",)]
        url = server.url            # "http://127.0.0.1:PORT/v1"
        ...
        server.requests             # the JSON bodies received, in order

Each request takes the next entry of ``script`` (then ``("ok",)`` forever):

- ``("ok",)``: answer with ``reply(body) -> (text, finish_reason)`` (default: echo the last user turn);
- ``("status", code, headers)``: an HTTP error with a JSON error body;
- ``("hang", seconds)``: sleep before answering (to trigger client time-outs).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def echo_reply(body: dict) -> tuple[str, str]:
    last_user = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
    return f"echo: {last_user[-40:]}", "stop"


class FakeOpenAIServer:
    def __init__(self, reply=echo_reply, honour_stop: bool = True):
        self.reply = reply
        self.honour_stop = honour_stop  # False: a server that ignores the request's `stop`
        self.script: list[tuple] = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    action = server.script.pop(0) if server.script else ("ok",)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if action[0] == "hang":
                    time.sleep(action[1])
                    action = ("ok",)
                if action[0] == "status":
                    return self._send(action[1], {"error": {"message": f"scripted {action[1]}"}},
                                      action[2] if len(action) > 2 else {})
                text, finish = server.reply(body)
                if server.honour_stop and body.get("stop"):  # as OpenAI: cut before it, drop it
                    hits = [text.find(s) for s in body["stop"] if s in text]
                    if hits:
                        text, finish = text[: min(hits)], "stop"
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                k = body.get("top_logprobs") or 0
                if body.get("logprobs") and k:
                    words = text.split(" ")
                    choice["logprobs"] = {"content": [
                        {"token": w, "logprob": -0.1,
                         "top_logprobs": [{"token": w, "logprob": -0.1}]
                         + [{"token": f"alt{j}", "logprob": -2.0 - j} for j in range(k - 1)]}
                        for w in words
                    ]}
                self._send(200, {"id": "x", "object": "chat.completion", "model": body.get("model"),
                                 "choices": [choice]})

            def _send(self, code, payload, headers=None):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (time-out)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
