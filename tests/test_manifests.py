"""Cluster manifests: RBAC for the tune step, checked against Kubernetes' own schemas."""

from pathlib import Path

import kubernetes_validate
import yaml

from rnn_classifier.katib import KUBERNETES_VERSION

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"


def load(relative: str) -> dict:
    return yaml.safe_load((MANIFESTS / relative).read_text())


def test_kustomization_lists_existing_files_that_kubernetes_accepts():
    kustomization = load("kustomization.yaml")
    assert kustomization["resources"]
    for resource in kustomization["resources"]:
        document = load(resource)
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_role_grants_exactly_experiment_management():
    role = load("rbac/katib-experiments-role.yaml")
    assert role["kind"] == "Role"  # namespaced: never a ClusterRole
    assert role["rules"] == [{"apiGroups": ["kubeflow.org"], "resources": ["experiments"],
                              "verbs": ["create", "get", "list", "watch", "delete"]}]


def test_binding_gives_the_role_to_the_pipeline_service_account():
    binding = load("rbac/katib-experiments-rolebinding.yaml")
    role = load("rbac/katib-experiments-role.yaml")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "default-editor"}]


def test_strict_validation_rejects_a_typo():
    role = load("rbac/katib-experiments-role.yaml")
    role["rules"][0]["verb"] = role["rules"][0].pop("verbs")
    try:
        kubernetes_validate.validate(role, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        assert "verb" in str(error)
    else:
        raise AssertionError("a misspelt field must be rejected")
