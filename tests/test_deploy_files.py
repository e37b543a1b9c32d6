"""deploy/ checked offline (issue 26): what cannot run here is validated by the tools that
would refuse it — `nginx -t` on the shipped nginx configuration, the Kubernetes schemas
(kubernetes-validate, strict) on the manifests, the Compose specification's schema on the
compose file — plus the facts that tie the files together (ports, names, deadlines).

The shipped nginx configuration also runs for real, in front of three replicas:
tests/test_deployment.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.settings import Settings
from tests.nginx_proxy import DEPLOY, check, nginx_binary, render, render_site

ROOT = DEPLOY.parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "compose.yaml"
DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]


def require_nginx() -> None:
    if nginx_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed: .ci/run must install Debian's nginx")
        pytest.skip("no nginx here (apt-get install nginx); CI runs this")


def manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def of_kind(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in manifests() if doc["kind"] == kind]
    return found


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(s|m)?", value).groups()  # type: ignore[union-attr]
    return float(number) * (60 if unit == "m" else 1)


# --- nginx ---


def test_nginx_accepts_the_shipped_configuration(tmp_path: Path) -> None:
    require_nginx()
    config = render(tmp_path, "127.0.0.1:18080", ["127.0.0.1:18001", "127.0.0.1:18002"])
    result = check(config)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_refuses_a_broken_configuration(tmp_path: Path) -> None:
    """The check above can fail: the same rendering with one directive misspelt is refused."""
    require_nginx()
    config = render(tmp_path, "127.0.0.1:18080", ["127.0.0.1:18001"])
    site = tmp_path / "conf.d" / "perception-llm.conf"
    site.write_text(site.read_text().replace("proxy_buffering off;", "proxy_bufering off;"))
    result = check(config)
    assert result.returncode != 0 and "proxy_bufering" in result.stderr


def test_rendering_changes_only_the_addresses_and_the_log_path(tmp_path: Path) -> None:
    site, replicas = render_site("127.0.0.1:1", ["127.0.0.1:2"], tmp_path / "a.log")
    shipped = (DEPLOY / "perception-llm.conf").read_text().splitlines()
    changed = [new for old, new in zip(shipped, site.splitlines(), strict=True) if old != new]
    assert changed == [
        "    listen 127.0.0.1:1;",
        f"    access_log {tmp_path / 'a.log'} perception_llm;",
    ]
    assert "server 127.0.0.1:2 max_fails=2 fail_timeout=10s;" in replicas


def directives(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def test_nginx_policy_is_what_the_replicas_need() -> None:
    conf = directives((DEPLOY / "perception-llm.conf").read_text())
    assert "hash $perception_llm_conversation consistent;" in conf
    assert re.search(r"map \$http_conversation_id \$perception_llm_conversation \{", conf)
    assert "proxy_buffering off;" in conf and "underscores_in_headers on;" in conf
    read = seconds(re.search(r"proxy_read_timeout (\S+);", conf).group(1))  # type: ignore[union-attr]
    # Above every deadline that ends a stream on the replica, so nginx never cuts one first.
    assert read > DEFAULTS.total_timeout_seconds + DEFAULTS.shutdown_grace_seconds
    assert read > DEFAULTS.keepalive_seconds
    body = re.search(r"client_max_body_size (\d+)m;", conf).group(1)  # type: ignore[union-attr]
    assert int(body) * 1024 * 1024 == DEFAULTS.max_body_bytes
    assert re.search(r"proxy_next_upstream error timeout .*non_idempotent;", conf)
    for replicas in ("perception-llm.replicas", "perception-llm.compose.replicas"):
        servers = re.findall(r"^server (\S+) (.*);$", (DEPLOY / replicas).read_text(), re.M)
        assert len(servers) == 3 and len({address for address, _ in servers}) == 3
        assert all("max_fails=" in params and "fail_timeout=" in params for _, params in servers)


# --- Kubernetes ---


def test_kubernetes_manifests_are_valid_against_the_schemas() -> None:
    import kubernetes_validate

    documents = manifests()
    assert {doc["kind"] for doc in documents} == {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for document in documents:
        kubernetes_validate.validate(document, "1.30.0", strict=True)


def test_kubernetes_validation_can_fail() -> None:
    import kubernetes_validate

    deployment = of_kind("Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 3}}  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)


def test_kubernetes_pods_drain_before_they_are_killed() -> None:
    pod = of_kind("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item for item in container["env"]}
    grace = float(env["PERCEPTION_LLM_SHUTDOWN_GRACE_SECONDS"]["value"])
    pause = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    # preStop pause, then SIGTERM: the drain and uvicorn's 5 s backstop fit before SIGKILL.
    assert pod["terminationGracePeriodSeconds"] > pause + grace + 5
    assert env["PERCEPTION_LLM_REPLICA"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    annotations = of_kind("Ingress")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$http_conversation_id"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert float(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > (
        DEFAULTS.total_timeout_seconds + grace
    )
    selector = of_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    assert selector == of_kind("Deployment")["spec"]["selector"]["matchLabels"]


# --- Compose ---


def validate_compose(path: Path) -> subprocess.CompletedProcess[str]:
    checker = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_is_valid_against_the_compose_specification(tmp_path: Path) -> None:
    result = validate_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periods:"))
    assert validate_compose(broken).returncode != 0  # the validator can refuse


def test_compose_replicas_are_each_named_and_behind_nginx() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    replicas = sorted(name for name in services if name.startswith("replica-"))
    listed = re.findall(
        r"^server (\S+):8000 ", (DEPLOY / "perception-llm.compose.replicas").read_text(), re.M
    )
    assert replicas == listed == ["replica-1", "replica-2", "replica-3"]
    for name in replicas:
        service = services[name]
        assert service["environment"]["PERCEPTION_LLM_REPLICA"] == name
        assert service["environment"]["PERCEPTION_LLM_CAPTURE"].startswith("postgresql://")
        assert seconds(service["stop_grace_period"]) > DEFAULTS.shutdown_grace_seconds
    for volume in services["nginx"]["volumes"]:
        source = volume.split(":", 1)[0]
        assert (COMPOSE.parent / source).is_file(), source
