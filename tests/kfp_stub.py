"""A stub Kubeflow Pipelines API server on 127.0.0.1: it stands in for the KFP backend.

No KFP backend can run on these machines, so `make schedule` / `make
unschedule` (pipelines/schedule.py, through the kfp 2.17 client) are tested
against this recorder. It answers the v2beta1 REST paths that client calls:
GET /apis/v2beta1/healthz; GET and POST /apis/v2beta1/experiments (list with
a display_name filter, create); GET and POST /apis/v2beta1/recurringruns
(list with an experiment_id and a display_name filter, create) and DELETE
/apis/v2beta1/recurringruns/{id}. It stores every request and keeps the
recurring runs it was given, as the backend would.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qs, urlparse

from tests.http_stub import JsonStubServer

API = "/apis/v2beta1"


def _display_name_filter(query: dict) -> str | None:
    if "filter" not in query:
        return None
    for predicate in json.loads(query["filter"][0]).get("predicates", []):
        # The client sends the operation as "EQUALS" or as its enum number, 1.
        if predicate.get("key") == "display_name" and predicate.get("operation") in (
                "EQUALS", 1):
            return predicate.get("stringValue") or predicate.get("string_value")
    return None


class KfpStub(JsonStubServer):
    """Records requests; keeps experiments and recurring runs in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict] = []
        self.experiments: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}

    def handle(self, method: str, path: str, body: dict | None) -> tuple[int, dict]:
        url = urlparse(path)
        query = parse_qs(url.query)
        self.requests.append({"method": method, "path": url.path, "query": query, "body": body})
        return self.answer(method, url.path, query, body)

    def answer(self, method: str, path: str, query: dict, body: dict | None
               ) -> tuple[int, dict]:
        if method == "GET" and path == f"{API}/healthz":
            return 200, {"multi_user": False}
        if path == f"{API}/experiments":
            if method == "POST":
                experiment = {**body, "experiment_id": str(uuid.uuid4()),
                              "storage_state": "AVAILABLE"}
                self.experiments[experiment["experiment_id"]] = experiment
                return 200, experiment
            name = _display_name_filter(query)
            found = [e for e in self.experiments.values()
                     if name is None or e["display_name"] == name]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if path == f"{API}/recurringruns":
            if method == "POST":
                run = {**body, "recurring_run_id": str(uuid.uuid4()),
                       "status": "ENABLED" if body.get("mode") == "ENABLE" else "DISABLED"}
                self.recurring_runs[run["recurring_run_id"]] = run
                return 200, run
            name = _display_name_filter(query)
            experiment = query.get("experiment_id", [None])[0]
            found = [r for r in self.recurring_runs.values()
                     if (name is None or r["display_name"] == name)
                     and (experiment is None or r.get("experiment_id") == experiment)]
            return 200, ({"recurringRuns": found, "total_size": len(found)} if found else {})
        if path.startswith(f"{API}/recurringruns/") and method == "DELETE":
            run_id = path.rsplit("/", 1)[-1]
            if self.recurring_runs.pop(run_id, None) is None:
                return 404, {"error": f"recurring run {run_id} not found", "code": 5}
            return 200, {}
        return 404, {"error": f"no stub for {method} {path}", "code": 5}
