"""A stub Kubeflow Pipelines API server on 127.0.0.1: it stands in for the KFP backend.

No KFP backend can run on these machines, so `make schedule` / `make
unschedule` (pipelines/schedule.py, through the kfp 2.17 client) are tested
against this recorder. It answers the v2beta1 REST paths that client calls:
GET /apis/v2beta1/healthz; GET and POST /apis/v2beta1/experiments (list with
a display_name filter, create); GET and POST /apis/v2beta1/recurringruns
(list with an experiment_id and a display_name filter, create) and DELETE
/apis/v2beta1/recurringruns/{id}; for `make upload` and `make submit`, GET
/apis/v2beta1/pipelines (a display_name filter), POST
/apis/v2beta1/pipelines/upload and /upload_version (multipart file uploads),
POST /apis/v2beta1/runs and GET /apis/v2beta1/runs/{id}. It stores every
request and keeps what it was given, as the backend would.
"""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import parse_qs, urlparse

from tests.http_stub import JsonStubServer

API = "/apis/v2beta1"


def _now() -> str:
    """A timestamp as the backend writes them (the kfp CLI prints created_at)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
        self.pipelines: dict[str, dict] = {}
        self.versions: list[dict] = []
        self.runs: dict[str, dict] = {}

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
                              "storage_state": "AVAILABLE", "created_at": _now()}
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
        if path == f"{API}/pipelines" and method == "GET":
            name = _display_name_filter(query)
            found = [p for p in self.pipelines.values()
                     if name is None or p["display_name"] == name]
            return 200, ({"pipelines": found, "total_size": len(found)} if found else {})
        if path == f"{API}/pipelines/upload" and method == "POST":
            name = query["name"][0]
            if any(p["display_name"] == name for p in self.pipelines.values()):
                return 409, {"error": f"pipeline {name} already exists", "code": 6}
            pipeline = {"pipeline_id": str(uuid.uuid4()), "display_name": name,
                        "created_at": _now()}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            self.versions.append({"pipeline_id": pipeline["pipeline_id"], "display_name": name,
                                  "pipeline_version_id": str(uuid.uuid4()),
                                  "package": body["files"]["uploadfile"]["content"]})
            return 200, pipeline
        if path == f"{API}/pipelines/upload_version" and method == "POST":
            pipeline_id = query["pipelineid"][0]
            if pipeline_id not in self.pipelines:
                return 404, {"error": f"pipeline {pipeline_id} not found", "code": 5}
            version = {"pipeline_id": pipeline_id, "display_name": query["name"][0],
                       "pipeline_version_id": str(uuid.uuid4()), "created_at": _now(),
                       "package": body["files"]["uploadfile"]["content"]}
            self.versions.append(version)
            return 200, {key: value for key, value in version.items() if key != "package"}
        if path == f"{API}/runs" and method == "POST":
            run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING",
                   "created_at": _now(), "scheduled_at": _now()}
            self.runs[run["run_id"]] = run
            return 200, run
        if path.startswith(f"{API}/runs/") and method == "GET":
            run = self.runs.get(path.rsplit("/", 1)[-1])
            return (200, run) if run else (404, {"error": "run not found", "code": 5})
        return 404, {"error": f"no stub for {method} {path}", "code": 5}
