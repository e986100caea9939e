"""Cloud Storage credentials for pipeline tasks, chosen at compile time.

Default: nothing. On GKE the pods' Kubernetes service account is bound to a
Google service account through Workload Identity, and google-cloud-storage
finds the credentials itself. Without Workload Identity a service-account
key kept in a Kubernetes Secret is mounted into the tasks that touch the
bucket (`python -m pipelines.compile --gcs-secret NAME`), and
GOOGLE_APPLICATION_CREDENTIALS points at the mounted file. Only the secret's
name and the mount path reach the compiled YAML, never the key.
"""

GCS_SECRET_MOUNT_PATH = "/var/secrets/google"
# The file inside the secret: `kubectl create secret generic NAME --from-file=key.json=...`.
GCS_SECRET_KEY_FILE = "key.json"


def use_gcs_secret(task, secret_name: str | None):
    """Mount Kubernetes secret `secret_name` on `task` and point the Google client at it.

    Does nothing when `secret_name` is empty (Workload Identity).
    """
    if not secret_name:
        return task
    from kfp import kubernetes

    kubernetes.use_secret_as_volume(task, secret_name=secret_name,
                                    mount_path=GCS_SECRET_MOUNT_PATH)
    task.set_env_variable("GOOGLE_APPLICATION_CREDENTIALS",
                          f"{GCS_SECRET_MOUNT_PATH}/{GCS_SECRET_KEY_FILE}")
    return task
