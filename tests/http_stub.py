"""The HTTP part shared by the stub API servers (tests/k8s_stub.py, tests/kfp_stub.py).

A threaded server on 127.0.0.1 (a free port) that reads each request's JSON
body, hands method, path and body to the stub's `handle`, and sends back the
JSON reply it returns. A multipart/form-data body (a file upload) reaches
`handle` as {"files": {field: {"filename": ..., "content": text}}}. Used as a
context manager: it serves inside `with`.
"""

from __future__ import annotations

import json
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _form_files(content_type: str, data: bytes) -> dict:
    """The parts of a multipart/form-data body, by field name."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + data)
    files = {}
    for part in message.iter_parts():
        files[part.get_param("name", header="content-disposition")] = {
            "filename": part.get_filename(),
            "content": part.get_payload(decode=True).decode("utf-8", "replace")}
    return {"files": files}


# A reply `handle` may return to drop the connection unanswered (a lost reply).
DROP_CONNECTION = (0, None)


class JsonStubServer:
    """Base class: subclasses implement `handle(method, path, body) -> (status, reply)`."""

    def __init__(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                content_type = self.headers.get("Content-Type") or ""
                if content_type.startswith("multipart/form-data"):
                    body = _form_files(content_type, data)
                else:
                    body = json.loads(data) if data else None
                code, reply = stub.handle(self.command, self.path, body)
                if (code, reply) == DROP_CONNECTION:
                    self.close_connection = True
                    return
                data = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            # http.server dispatches on these names.
            do_GET = do_POST = do_DELETE = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, method: str, path: str, body: dict | None) -> tuple[int, dict]:
        """The status code and JSON reply for one request (`path` with its query)."""
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
