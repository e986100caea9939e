"""A stub Kubernetes API server on 127.0.0.1 for the Katib Experiment endpoints.

No Kubernetes API can run on these machines, so the `tune` step is tested
against this recorder: it stores every request, and walks each created
Experiment's status through a scripted list of conditions, one per GET
(Created -> Running -> Succeeded, or -> Failed), as Katib's controller would.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXPERIMENT_PATH = re.compile(
    r"^/apis/kubeflow\.org/v1beta1/namespaces/(?P<namespace>[^/]+)/experiments(?:/(?P<name>[^/]+))?$")


def condition(kind: str, reason: str = "", message: str = "") -> dict:
    return {"type": kind, "status": "True", "reason": reason or f"Experiment{kind}",
            "message": message or f"Experiment is {kind.lower()}"}


SUCCEEDED = [
    {"conditions": [condition("Created")]},
    {"conditions": [condition("Created"), condition("Running")], "trialsRunning": 2},
    {"conditions": [condition("Created"), condition("Running"), condition("Succeeded")],
     "trialsSucceeded": 4, "currentOptimalTrial": {
         "bestTrialName": "rnn-sweep-abc-3",
         "parameterAssignments": [
             {"name": "learning_rate", "value": "0.0031"}, {"name": "rnn_units", "value": "48"},
             {"name": "rnn_type", "value": "lstm"}, {"name": "loss", "value": "wce"}],
         "observation": {"metrics": [{"name": "val_macro_auc", "latest": "0.97", "max": "0.98",
                                      "min": "0.5"}]}}},
]
FAILED = [
    {"conditions": [condition("Created")]},
    {"conditions": [condition("Created"), condition("Running")]},
    {"conditions": [condition("Created"), condition("Running"),
                    condition("Failed", "ExperimentMaxFailedTrialsReached",
                              "Experiment has reached the maximum number of failed trials")]},
]


class KubernetesStub:
    """Records requests; serves scripted Experiment statuses."""

    def __init__(self, script: list[dict]):
        self.script = script
        self.requests: list[dict] = []
        self.experiments: dict[tuple[str, str], dict] = {}
        self.gets: dict[tuple[str, str], int] = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                stub.requests.append({"method": self.command, "path": self.path, "body": body})
                match = EXPERIMENT_PATH.match(self.path.split("?")[0])
                if not match:
                    return self._reply(404, {"kind": "Status", "code": 404})
                namespace, name = match["namespace"], match["name"]
                if self.command == "POST" and name is None:
                    key = (namespace, body["metadata"]["name"])
                    if key in stub.experiments:
                        return self._reply(409, {"kind": "Status", "reason": "AlreadyExists"})
                    stub.experiments[key] = body
                    return self._reply(201, body)
                key = (namespace, name)
                if key not in stub.experiments:
                    return self._reply(404, {"kind": "Status", "reason": "NotFound"})
                if self.command == "GET":
                    step = min(stub.gets.get(key, 0), len(stub.script) - 1)
                    stub.gets[key] = stub.gets.get(key, 0) + 1
                    return self._reply(200, {**stub.experiments[key], "status": stub.script[step]})
                if self.command == "DELETE":
                    stub.experiments.pop(key)
                    return self._reply(200, {"kind": "Status", "status": "Success"})
                return self._reply(405, {"kind": "Status", "code": 405})

            # http.server dispatches on these names.
            do_GET = do_POST = do_DELETE = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> KubernetesStub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
