"""Compile-time task settings for a shared cluster: retries, resources and timeouts.

Steps that are safe to repeat (they read their inputs and write only their
own outputs, or replace a pointer only at the generation they read) are
retried with exponential backoff, so an evicted pod or a Cloud Storage blip
does not fail a nightly run. The train step is not retried: a retry would
start a long GPU run again from scratch, and it is the step most likely to
fail for a reason a retry does not fix (bad hyperparameters, out of memory).

Train and tune get CPU and memory requests (equal limits, so the scheduler
places them where they fit and they are not evicted first under pressure)
and a deadline after which Kubernetes stops the pod. `make compile CPU=...
MEMORY=... TIMEOUT_HOURS=...` sets them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Retries of the steps that are safe to repeat: 3 more tries, 30 s, 60 s, 120 s apart.
RETRIES = 3
RETRY_BACKOFF = "30s"
RETRY_BACKOFF_FACTOR = 2.0
RETRY_BACKOFF_MAX = "600s"
# The task names (component function names) that are retried.
RETRIED_STEPS = ("fingerprint_data", "ingest", "validate_data", "check_drift", "evaluate",
                 "compare", "publish_model", "tune")


@dataclass(frozen=True)
class TaskResources:
    """CPU, memory and deadline of the train and tune steps."""

    cpu: str = "4"
    memory: str = "16G"
    timeout_hours: float = 12.0


DEFAULT_RESOURCES = TaskResources()


def retry_if_safe(task, step: str):
    """Retry `task` with backoff when its step is safe to repeat (RETRIED_STEPS)."""
    if step in RETRIED_STEPS:
        task.set_retry(num_retries=RETRIES, backoff_duration=RETRY_BACKOFF,
                       backoff_factor=RETRY_BACKOFF_FACTOR,
                       backoff_max_duration=RETRY_BACKOFF_MAX)
    return task


def set_resources(task, resources: TaskResources):
    """Requests equal to limits for CPU and memory, and a deadline, on `task`."""
    from kfp import kubernetes

    task.set_cpu_request(resources.cpu).set_cpu_limit(resources.cpu)
    task.set_memory_request(resources.memory).set_memory_limit(resources.memory)
    kubernetes.set_timeout(task, int(resources.timeout_hours * 3600))
    return task
