"""deploy/ray: the KubeRay RayJob runs an existing `lambdarec` command with valid Ray-engine settings, on an
image whose Ray matches the cluster's. Offline: no cluster, no Docker."""

from __future__ import annotations

import io
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from lambdarec.settings import Settings

from .usage import DEPLOY, is_setting_or_known, resolve

RAYJOB = DEPLOY / "ray" / "rayjob.yaml"
RAY_DOCKERFILE = DEPLOY / "ray" / "Dockerfile"
CONFIGMAP = DEPLOY / "k8s" / "configmap.yaml"


@pytest.fixture(scope="module")
def rayjob() -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(RAYJOB.read_text()) if d is not None]
    return doc


def _head(rayjob: dict[str, Any]) -> dict[str, Any]:
    return rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]


def _pod_specs(rayjob: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = rayjob["spec"]["rayClusterSpec"]
    return [
        cluster["headGroupSpec"]["template"]["spec"],
        *(group["template"]["spec"] for group in cluster["workerGroupSpecs"]),
        rayjob["spec"]["submitterPodTemplate"]["spec"],
    ]


def test_rayjob_is_a_kuberay_rayjob_that_runs_the_batch_job(rayjob: dict[str, Any]) -> None:
    assert rayjob["apiVersion"] == "ray.io/v1"
    assert rayjob["kind"] == "RayJob"
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert argv[0] == "lambdarec"
    path, _ = resolve(argv[1:])
    assert path == ["lambdarec", "batch", "run"]
    assert "--json" in argv
    spec = rayjob["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["activeDeadlineSeconds"] > 0


def test_rayjob_head_selects_the_ray_engine_with_valid_settings(
    rayjob: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (container,) = _head(rayjob)["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["LAMBDAREC_BATCH__ENGINE"] == "ray"
    for name in env:
        assert is_setting_or_known(name), f"{name} names no setting"
    # The settings the driver would load: the ConfigMap's file at the mounted path, then these variables.
    config = yaml.safe_load(CONFIGMAP.read_text())
    (key,) = config["data"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in _head(rayjob)["template"]["spec"]["volumes"]}
    (config_volume,) = [
        n for n, v in volumes.items() if v.get("configMap", {}).get("name") == config["metadata"]["name"]
    ]
    assert env["LAMBDAREC_CONFIG"] == f"{mounts[config_volume]}/{key}"
    tomllib.loads(config["data"][key])
    local = tmp_path / key
    local.write_text(config["data"][key])
    for name in [n for n in os.environ if n.startswith("LAMBDAREC_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(local) if name == "LAMBDAREC_CONFIG" else value)
    settings = Settings.load()
    assert settings.batch.engine == "ray" and settings.store.url.startswith("cassandra://")
    assert [e["secretRef"]["name"] for e in container["envFrom"]] == ["lambdarec-secrets"]


def test_rayjob_trains_on_the_head_and_scores_on_workers(rayjob: dict[str, Any]) -> None:
    assert _head(rayjob)["rayStartParams"]["num-cpus"] == "0"
    groups = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert groups and all(g["replicas"] >= 1 for g in groups)
    (container,) = _head(rayjob)["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    per_actor = float(env["LAMBDAREC_BATCH__RAY__CPUS_PER_ACTOR"])
    for group in groups:
        (worker,) = group["template"]["spec"]["containers"]
        assert float(worker["resources"]["limits"]["cpu"]) >= per_actor, "an actor must fit in a worker pod"


def test_rayjob_pods_are_non_root_and_use_the_ray_image(rayjob: dict[str, Any]) -> None:
    images = set()
    for pod in _pod_specs(rayjob):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            images.add(c["image"])
    assert len(images) == 1, f"one image for the head, workers and submitter; got {sorted(images)}"


def test_rayjob_ray_version_matches_the_image() -> None:
    parser = DockerfileParser(fileobj=io.BytesIO(RAY_DOCKERFILE.read_bytes()))
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)(-cpu|-gpu|-cu\d+)?", parser.baseimage)
    assert match, f"deploy/ray/Dockerfile should start from a rayproject/ray release image; got {parser.baseimage}"
    (doc,) = [d for d in yaml.safe_load_all(RAYJOB.read_text()) if d is not None]
    assert doc["spec"]["rayClusterSpec"]["rayVersion"] == match.group(1)
    pyproject = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())
    oldest = tuple(int(p) for p in pyproject["project"]["requires-python"].removeprefix(">=").split("."))
    assert (int(match.group(2)), int(match.group(3))) >= oldest
