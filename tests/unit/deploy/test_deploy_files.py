"""The deploy recipes: valid against their schemas, consistent with each other, and using only commands, flags
and settings that exist. Offline: no Docker, no cluster, no network."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from typer.testing import CliRunner

from batch_layer.job import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_GATE, EXIT_LOCKED
from lambdarec.cli import app
from lambdarec.settings import Settings
from lambdarec.settings.eventlog import impressions_log

from .usage import DEPLOY, ROOT, is_setting_or_known, resolve

K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DAG = DEPLOY / "airflow" / "lambdarec_nightly.py"
# The oldest Kubernetes the manifests claim (podFailurePolicy is GA from 1.31) and the newest schemas bundled.
K8S_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
IMAGE = "lambdarec"

YAML_FILES = sorted(p for p in DEPLOY.rglob("*.y*ml") if "local" not in p.relative_to(DEPLOY).parts)
K8S_FILES = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _k8s_objects() -> list[dict[str, Any]]:
    return [doc for path in K8S_FILES for doc in _load_all(path)]


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in _k8s_objects() if o["kind"] == kind]


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def _workloads() -> list[dict[str, Any]]:
    return [o for o in _k8s_objects() if o["kind"] in ("Deployment", "Job", "CronJob")]


def _lambdarec_containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [
        (o, c)
        for o in _workloads()
        for c in [*_pod_spec(o).get("initContainers", []), *_pod_spec(o)["containers"]]
        if c["image"] == IMAGE
    ]


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _compose_lambdarec_services() -> dict[str, dict[str, Any]]:
    # Those built from deploy/Dockerfile (the x-lambdarec anchor), i.e. running the lambdarec image.
    return {n: s for n, s in _compose()["services"].items() if "build" in s}


def _interpolate_defaults(value: str) -> str:
    """Compose's ``${VAR:-default}`` with VAR unset."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", value)


# ---- YAML ------------------------------------------------------------------------------------------------------


def test_deploy_has_the_expected_yaml_files() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES}
    assert {"compose.yaml", "k8s/kustomization.yaml", "k8s/batch-cronjob.yaml"} <= names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_yaml_file_parses(path: Path) -> None:
    docs = _load_all(path)
    assert docs, f"{path} holds no YAML document"
    assert all(isinstance(d, dict) for d in docs)


# ---- Kubernetes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_kubernetes_manifest_matches_its_schema(path: Path, version: str) -> None:
    for doc in _load_all(path):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name} ({doc['kind']} {doc['metadata']['name']}) is invalid for Kubernetes {version}: "
                        f"{exc.message} at {'/'.join(map(str, exc.path))}")  # fmt: skip


def test_kubernetes_validation_catches_a_misspelled_field() -> None:
    deployment = next(o for o in _by_kind("Deployment"))
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replica"] = 3  # "replicas", misspelled
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest_and_pins_the_image() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S_FILES)
    assert [i["name"] for i in kustomization["images"]] == [IMAGE]
    for obj in _k8s_objects():
        assert "namespace" not in obj["metadata"], f"{obj['metadata']['name']}: the kustomization sets namespaces"


def test_cronjob_never_overlaps_and_bounds_its_runs() -> None:
    (cron,) = _by_kind("CronJob")
    spec, job = cron["spec"], cron["spec"]["jobTemplate"]["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    assert job["backoffLimit"] >= 1
    assert job["activeDeadlineSeconds"] > 0
    (container,) = job["template"]["spec"]["containers"]
    resolve(container["args"])
    assert container["args"][:2] == ["batch", "run"]
    assert "--json" in container["args"]


def test_cronjob_retries_only_plain_failures() -> None:
    (cron,) = _by_kind("CronJob")
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    fail_fast = [r for r in job["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    codes = {c for r in fail_fast for c in r["onExitCodes"]["values"]}
    assert codes == {EXIT_BAD_INPUT, EXIT_GATE, EXIT_LOCKED}
    assert EXIT_FAILED not in codes


def test_speed_consumers_do_not_outnumber_partitions_and_stop_gracefully() -> None:
    (speed,) = [o for o in _by_kind("Deployment") if o["metadata"]["name"] == "lambdarec-speed"]
    partitions = _configmap_settings().log.partitions
    assert speed["spec"]["replicas"] <= partitions
    assert speed["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    assert _pod_spec(speed)["terminationGracePeriodSeconds"] >= 30
    (container,) = _pod_spec(speed)["containers"]
    resolve(container["args"])
    assert container["args"][:2] == ["speed", "run"]


def test_nightly_waits_for_the_archiver_and_reads_the_lake() -> None:
    from batch_layer.cli_lake import EXIT_WAIT_TIMEOUT

    (cron,) = _by_kind("CronJob")
    job = cron["spec"]["jobTemplate"]["spec"]
    (wait,) = _pod_spec(cron)["initContainers"]
    assert wait["args"][:2] == ["lake", "wait"] and "--until" in wait["args"]
    timeout = float(wait["args"][wait["args"].index("--timeout") + 1])
    assert timeout < job["activeDeadlineSeconds"]
    assert EXIT_WAIT_TIMEOUT not in job["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"]  # retried
    assert _configmap_settings().batch.source == "lake" and _configmap_settings().lake.url.startswith("s3://")
    (archive,) = [o for o in _by_kind("Deployment") if o["metadata"]["name"] == "lambdarec-archive"]
    (container,) = _pod_spec(archive)["containers"]
    assert container["args"][:2] == ["archive", "run"]
    assert _pod_spec(archive)["terminationGracePeriodSeconds"] >= 30


def test_serving_probes_livez_and_readyz_and_has_a_service() -> None:
    (serving,) = [o for o in _by_kind("Deployment") if o["metadata"]["name"] == "lambdarec-serving"]
    (container,) = _pod_spec(serving)["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    (service,) = _by_kind("Service")
    assert service["spec"]["selector"] == serving["spec"]["selector"]["matchLabels"]
    (hpa,) = _by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == serving["metadata"]["name"]


def test_every_pod_is_non_root_with_a_read_only_root_filesystem() -> None:
    for obj in _workloads():
        pod = _pod_spec(obj)
        assert pod["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, f"{c['name']}: /tmp must be writable"


def test_every_lambdarec_container_runs_an_existing_command() -> None:
    for obj, container in _lambdarec_containers():
        assert "command" not in container, "the image's ENTRYPOINT is lambdarec; give arguments in args"
        resolve(container["args"])
        result = CliRunner().invoke(app, [*container["args"][:2], "--help"])
        assert result.exit_code == 0, f"{obj['metadata']['name']}: {result.output}"


def _configmap_settings() -> Settings:
    (config,) = _by_kind("ConfigMap")
    return Settings.model_validate(tomllib.loads(config["data"]["lambdarec.toml"]))


def test_configmap_toml_is_valid_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (config,) = _by_kind("ConfigMap")
    path = tmp_path / "lambdarec.toml"
    path.write_text(config["data"]["lambdarec.toml"])
    for name in [n for n in os.environ if n.startswith("LAMBDAREC_")]:
        monkeypatch.delenv(name)
    (secret,) = _by_kind("Secret")
    for name, value in secret["stringData"].items():
        monkeypatch.setenv(name, value)
    settings = Settings.load(path)
    assert settings.store.url.startswith("cassandra://")
    assert settings.log.url.startswith("kafka://")
    assert settings.serving.host == "0.0.0.0"


def test_containers_point_lambdarec_config_at_the_mounted_configmap() -> None:
    (config,) = _by_kind("ConfigMap")
    (key,) = config["data"]
    for obj, container in _lambdarec_containers():
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in _pod_spec(obj)["volumes"]}
        (config_volume,) = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == "lambdarec-config"]
        assert env["LAMBDAREC_CONFIG"] == f"{mounts[config_volume]}/{key}", obj["metadata"]["name"]
        refs = [e["secretRef"]["name"] for e in container.get("envFrom", [])]
        assert refs == ["lambdarec-secrets"], obj["metadata"]["name"]


def test_secret_holds_placeholders_only() -> None:
    (secret,) = _by_kind("Secret")
    for name, value in secret["stringData"].items():
        assert is_setting_or_known(name), f"{name} names no setting"
        assert value in ("", "[]"), f"{name}: real secrets belong in the cluster, not in the repository"


def test_kubernetes_env_vars_name_settings() -> None:
    for _, container in _lambdarec_containers():
        for e in container.get("env", []):
            assert is_setting_or_known(e["name"]), f"{container['name']}: {e['name']} names no setting"


# ---- Compose ---------------------------------------------------------------------------------------------------


def test_compose_matches_the_compose_specification() -> None:
    # check-jsonschema ships the Compose Specification's JSON schema; a builtin schema needs no network.
    proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(COMPOSE)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_validation_catches_an_unknown_key(tmp_path: Path) -> None:
    broken = _compose()
    broken["services"]["serving"]["dependz_on"] = broken["services"]["serving"].pop("depends_on")
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(path)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "dependz_on" in proc.stdout + proc.stderr


def test_compose_services_and_their_order() -> None:
    services = _compose()["services"]
    assert services["cassandra"]["image"].startswith("cassandra:5.0.")
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", services["kafka"]["image"])
    for name in ("cassandra", "kafka", "serving"):
        assert services[name]["healthcheck"]["test"], name
    assert "cqlsh" in " ".join(services["cassandra"]["healthcheck"]["test"])
    assert "/readyz" in " ".join(services["serving"]["healthcheck"]["test"])
    assert services["store-init"]["depends_on"]["cassandra"]["condition"] == "service_healthy"
    assert services["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("speed", "serving"):
        deps = services[name]["depends_on"]
        assert deps["store-init"]["condition"] == deps["kafka-init"]["condition"] == "service_completed_successfully"
    assert services["batch"]["profiles"] == ["batch"]
    assert any(v.endswith(":ro") for v in services["batch"]["volumes"])


def test_compose_kafka_init_creates_the_topics_the_settings_name() -> None:
    services = _compose_lambdarec_services()
    env = services["speed"]["environment"]
    script = " ".join(_compose()["services"]["kafka-init"]["command"])
    topic = env["LAMBDAREC_LOG__URL"].rsplit("/", 1)[1]
    assert f"--topic {topic} --partitions {env['LAMBDAREC_LOG__PARTITIONS']}" in script
    dead_letter = Settings.load(overrides={"log": {"url": env["LAMBDAREC_LOG__URL"]}}).log.dead_letter
    assert dead_letter == f"{topic}-dead-letter"  # derived from the topic: deployments on one Kafka never collide
    assert f"--topic {dead_letter} --partitions 1" in script
    impressions = Settings.load(overrides={"log": {"url": env["LAMBDAREC_LOG__URL"],
                                                   "impressions_topic": env["LAMBDAREC_LOG__IMPRESSIONS_TOPIC"]},
                                           "speed": {"feedback": {"own_consumer": True}}})  # fmt: skip
    own = impressions_log(impressions.log)
    assert own is not None and f"--topic {own.url.rsplit('/', 1)[1]} --partitions" in script
    assert f"--topic {own.dead_letter} --partitions 1" in script  # bad impressions: their own dead letters
    assert script.count("--if-not-exists") == 4


def test_compose_lambdarec_services_run_existing_commands_with_valid_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = _compose_lambdarec_services()
    assert set(services) == {"store-init", "batch", "speed", "serving", "archive", "speed-impressions",
                             "archive-impressions"}  # fmt: skip
    for name, service in services.items():
        resolve(service["command"])
        for var in service["environment"]:
            assert is_setting_or_known(var), f"compose service {name}: {var} names no setting"
        for key in [k for k in os.environ if k.startswith("LAMBDAREC_")]:
            monkeypatch.delenv(key)
        for var, value in service["environment"].items():
            monkeypatch.setenv(var, _interpolate_defaults(str(value)))
        Settings.load()  # raises ConfigError naming a bad key or value


def test_compose_variables_are_not_mistaken_for_settings() -> None:
    # lambdarec refuses unknown LAMBDAREC_* variables; compose's own must not look like settings.
    for var in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()):
        assert not var.startswith("LAMBDAREC_"), var


# ---- Dockerfile ------------------------------------------------------------------------------------------------


def _dockerfile() -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(DOCKERFILE.read_bytes()))


def _stages(parser: DockerfileParser) -> list[list[dict[str, Any]]]:
    stages: list[list[dict[str, Any]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_dockerfile_is_multi_stage_with_a_slim_runtime() -> None:
    parser = _dockerfile()
    assert parser.is_multistage
    stages = _stages(parser)
    assert len(stages) >= 2
    assert stages[0][0]["value"].endswith("AS builder")
    runtime = stages[-1]
    assert "slim" in runtime[0]["value"]
    runtime_text = " ".join(i["value"] for i in runtime)
    assert "build-essential" not in runtime_text, "compilers belong in the builder"
    assert "from=builder" in runtime_text


def test_dockerfile_runs_as_a_non_root_user_with_lambdarec_as_entrypoint() -> None:
    runtime = _stages(_dockerfile())[-1]
    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0")
    assert uid.isdigit(), "a numeric uid lets Kubernetes' runAsNonRoot check it"
    for obj in _workloads():
        assert str(_pod_spec(obj)["securityContext"]["runAsUser"]) == uid
    (entrypoint,) = [i["value"] for i in runtime if i["instruction"] == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["lambdarec"]


def test_dockerfile_has_no_torch_by_default() -> None:
    parser = _dockerfile()
    assert parser.args.get("EXTRAS", "") == ""
    assert "torch" not in re.sub(r"#.*", "", DOCKERFILE.read_text()).replace("TORCH_INDEX_URL", "")


def test_dockerfile_copies_every_package_and_dockerignore_lets_them_in() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {i["value"].split()[0].rstrip("/") for i in _dockerfile().structure if i["instruction"] == "COPY"}
    missing = packages - copied
    assert not missing, f"pyproject.toml packages not copied into the image: {sorted(missing)}"
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, ".dockerignore should be an allow-list"
    for source in copied | {"pyproject.toml", "README.md"}:
        assert source in allowed, f"{source} is copied but .dockerignore keeps it out of the context"


# ---- Airflow ---------------------------------------------------------------------------------------------------


def _dag_module() -> tuple[ast.Module, dict[str, Any]]:
    tree = ast.parse(DAG.read_text(), filename=str(DAG))
    constants: dict[str, Any] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target = node.targets[0]
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            continue
        if isinstance(target, ast.Name):
            constants[target.id] = value
        elif isinstance(target, ast.Tuple):  # A, B = 1, 2
            constants.update(zip((t.id for t in target.elts if isinstance(t, ast.Name)), value, strict=True))
    return tree, constants


def _dag_decorator(tree: ast.Module) -> dict[str, ast.expr]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "dag":
                    return {k.arg: k.value for k in deco.keywords if k.arg}
    raise AssertionError("no @dag(...) in the DAG file")


def _value(node: ast.expr, constants: dict[str, Any]) -> Any:
    return constants[node.id] if isinstance(node, ast.Name) else ast.literal_eval(node)


def test_airflow_dag_id_schedule_and_single_active_run() -> None:
    tree, constants = _dag_module()
    kwargs = _dag_decorator(tree)
    assert _value(kwargs["dag_id"], constants) == "lambdarec_nightly"
    (cron,) = _by_kind("CronJob")
    assert _value(kwargs["schedule"], constants) == cron["spec"]["schedule"]
    assert _value(kwargs["max_active_runs"], constants) == 1
    assert _value(kwargs["catchup"], constants) is False


def test_airflow_dag_runs_lambdarec_batch_run_json() -> None:
    _, constants = _dag_module()
    command = constants["COMMAND"]
    assert command[:4] == ["lambdarec", "batch", "run", "--json"]
    path, _ = resolve([*command[1:], "--as-of", "2024-01-01"])
    assert path == ["lambdarec", "batch", "run"]


def test_airflow_dag_waits_for_the_lake_with_the_cli_exit_code() -> None:
    from batch_layer.cli_lake import EXIT_WAIT_TIMEOUT

    _, constants = _dag_module()
    resolve([*constants["WAIT_COMMAND"][1:], "--until", "2024-01-01"])
    assert constants["EXIT_WAIT_TIMEOUT"] == EXIT_WAIT_TIMEOUT
    assert "lake_wait() >> batch_run()" in DAG.read_text()


def test_airflow_dag_exit_codes_match_the_job() -> None:
    _, constants = _dag_module()
    in_dag = [constants[name] for name in ("EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_GATE", "EXIT_LOCKED")]
    assert in_dag == [EXIT_FAILED, EXIT_BAD_INPUT, EXIT_GATE, EXIT_LOCKED]


def test_deploy_local_readme_names_the_datacenter_its_cassandra_runs() -> None:
    """Issue 18 item 1: the datacenter name had to be read from system.local. SimpleSnitch's one is datacenter1."""
    local = ROOT / "deploy" / "local"
    assert re.search(r"^endpoint_snitch: SimpleSnitch$", (local / "conf" / "cassandra.yaml.in").read_text(), re.M)
    text = (local / "README.md").read_text()
    assert "cassandra://127.0.0.1:19042/recs?dc=datacenter1" in text
    assert "kafka://127.0.0.1:19092/" in text


def test_the_base_install_has_what_the_client_side_and_config_show_import() -> None:
    """Issue 18 item 11: client code needs httpx, which `make setup` (the base install, no extras) lacked."""
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower() for requirement in base}
    assert {"httpx", "tomlkit"} <= names
