"""A stub Kubernetes API server on 127.0.0.1 for the Katib Experiment endpoints.

No Kubernetes API can run on these machines, so the `tune` step is tested
against this recorder: it stores every request, and walks each created
Experiment's status through a scripted list of conditions, one per GET
(Created -> Running -> Succeeded, or -> Failed), as Katib's controller would.
A create with `dryRun=All` is answered (409 if the name exists) but stores
nothing, as the API server does; `lose_create_replies` drops the connection
after storing that many creates, as a lost reply would.
"""

from __future__ import annotations

import re

from tests.http_stub import DROP_CONNECTION, JsonStubServer

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


class KubernetesStub(JsonStubServer):
    """Records requests; serves scripted Experiment statuses."""

    def __init__(self, script: list[dict], lose_create_replies: int = 0):
        super().__init__()
        self.script = script
        self.lose_create_replies = lose_create_replies
        self.requests: list[dict] = []
        self.experiments: dict[tuple[str, str], dict] = {}
        self.gets: dict[tuple[str, str], int] = {}

    def handle(self, method: str, path: str, body: dict | None) -> tuple[int, dict]:
        self.requests.append({"method": method, "path": path, "body": body})
        match = EXPERIMENT_PATH.match(path.split("?")[0])
        if not match:
            return 404, {"kind": "Status", "code": 404}
        namespace, name = match["namespace"], match["name"]
        if method == "POST" and name is None:
            key = (namespace, body["metadata"]["name"])
            if key in self.experiments:
                return 409, {"kind": "Status", "reason": "AlreadyExists", "code": 409}
            if "dryRun=All" in path:
                return 201, body
            self.experiments[key] = body
            if self.lose_create_replies:
                self.lose_create_replies -= 1
                return DROP_CONNECTION
            return 201, body
        key = (namespace, name)
        if key not in self.experiments:
            return 404, {"kind": "Status", "reason": "NotFound"}
        if method == "GET":
            step = min(self.gets.get(key, 0), len(self.script) - 1)
            self.gets[key] = self.gets.get(key, 0) + 1
            return 200, {**self.experiments[key], "status": self.script[step]}
        if method == "DELETE":
            self.experiments.pop(key)
            return 200, {"kind": "Status", "status": "Success"}
        return 405, {"kind": "Status", "code": 405}
