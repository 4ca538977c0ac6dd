"""deploy/ cannot run here (no Docker engine, no cluster): check its structure instead.

Compose: the services, images, healthchecks, volumes, and that every command it runs is one
the CLI accepts. Kubernetes: every manifest validates (strict) against the API schemas of
`kubernetes-validate`; probes are set; commands parse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from engine.cli.main import build_parser
from engine.projections.projector import PROJECTIONS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.33.0"


def _parses(argv: list[str]) -> None:
    """The CLI accepts `argv` (argparse exits on anything it does not know)."""
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # pragma: no cover - the failure message is the point
        raise AssertionError(f"leadengine {' '.join(argv)}: not a valid command") from exc


def test_dockerfile_is_slim_non_root_with_the_console_script() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    user = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["leadengine"]' in text


def test_compose_has_every_part_with_healthchecks_and_valid_commands() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services: dict[str, Any] = doc["services"]
    assert set(services) == {
        "kafka",
        "postgres",
        "db-init",
        "consumer",
        "projector",
        "relay",
        "timers",
    }
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("kafka", "postgres", "consumer", "projector", "relay", "timers"):
        assert services[name]["healthcheck"]["test"], name
    assert services["db-init"]["restart"] == "no"
    for name in ("consumer", "projector", "relay", "timers"):
        needs = services[name]["depends_on"]
        assert needs["db-init"]["condition"] == "service_completed_successfully"
    for name in ("db-init", "consumer", "projector", "relay", "timers"):
        svc = services[name]
        assert svc["image"] == "leadengine:latest" and svc["build"]["dockerfile"]
        _parses(svc["command"])
        env = svc["environment"]
        assert env["LEADENGINE_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert "@postgres:5432/" in env["LEADENGINE_DATABASE_URL"]
        assert env["LEADENGINE_MASTER_KEY"].startswith("${LEADENGINE_MASTER_KEY:?")  # not in code
    for name in ("consumer", "projector", "relay", "timers"):
        test = services[name]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "leadengine"]
        _parses(test[2:])
    assert set(doc["volumes"]) == {"kafka-data", "pg-data"}
    mounted = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert mounted == set(doc["volumes"])


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


@pytest.mark.parametrize(
    ("name", "doc"), _manifests(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_kubernetes_manifests_validate(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubernetes_workloads_are_complete() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in _manifests()}
    assert set(kinds) == {
        ("ConfigMap", "leadengine"),
        ("Secret", "leadengine"),
        ("Job", "leadengine-db-init"),
        ("Job", "leadengine-rebuild"),
        ("Deployment", "leadengine-consumer"),
        ("Deployment", "leadengine-projector"),
        ("Deployment", "leadengine-relay"),
        ("Deployment", "leadengine-timers"),
    }
    for key, doc in kinds.items():
        if key[0] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        [container] = pod["containers"]
        _parses(container["args"])
        refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
        assert refs == {"leadengine"}
        if key[0] == "Deployment":
            port = int(kinds[("ConfigMap", "leadengine")]["data"]["LEADENGINE_METRICS_PORT"])
            assert {"name": "metrics", "containerPort": port} in container["ports"]
            for probe in ("livenessProbe", "readinessProbe"):
                command = container[probe]["exec"]["command"]
                assert command[0] == "leadengine"
                _parses(command[1:])
    assert kinds[("Deployment", "leadengine-projector")]["spec"]["replicas"] == 1
    for single in ("leadengine-projector", "leadengine-relay", "leadengine-timers"):  # one each
        assert kinds[("Deployment", single)]["spec"]["replicas"] == 1
        assert kinds[("Deployment", single)]["spec"]["strategy"]["type"] == "Recreate"
    relay = kinds[("Deployment", "leadengine-relay")]["spec"]["template"]["spec"]["containers"][0]
    assert relay["args"] == ["relay"]
    assert yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["relay"][
        "command"
    ] == ["relay"]
    partitions = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["kafka"][
        "environment"
    ]["KAFKA_NUM_PARTITIONS"]
    assert kinds[("Deployment", "leadengine-consumer")]["spec"]["replicas"] <= partitions
    rebuild = kinds[("Job", "leadengine-rebuild")]["spec"]["template"]["spec"]["containers"][0]
    assert rebuild["args"][:2] == ["projections", "rebuild"]
    assert rebuild["args"][2] in PROJECTIONS
    secret = kinds[("Secret", "leadengine")]["stringData"]
    assert all("REPLACE_ME" in v for v in secret.values())  # an example, never a real secret
