"""A local HTTP listener for outbound tests: records requests, answers from a script of responses."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def _handle(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        self.server.received.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                     "body": body})
        status, headers, answer = self.server.answer(self)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, *args):
        pass


class Listener:
    """`answers`: a list of (status, headers, body) used in turn (the last one repeats)."""

    def __init__(self, answers=None):
        self.answers = list(answers or [(200, {}, b"ok")])
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.received = []
        self.server.answer = self._next
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _next(self, handler):
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    @property
    def received(self) -> list[dict]:
        return self.server.received

    @property
    def port(self) -> int:
        return self.server.server_port

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Listener:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
