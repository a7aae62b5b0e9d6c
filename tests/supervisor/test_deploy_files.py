"""deploy/: the files Docker, Kubernetes and systemd would read, checked with what runs here.

Docker and Kubernetes do not run on this machine, so their files are parsed and checked for
the things that break deployments: names that must match across files, probes that hit real
endpoints, grace periods that fit inside each other, env vars that siopg actually reads.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sv_helpers import REPO

from siopg.supervisor.supervisor import HEALTH_PATHS

yaml = pytest.importorskip("yaml")

DEPLOY = REPO / "deploy"
CONFIG_SRC = "".join((REPO / "siopg" / name).read_text() for name in ("supervisor/config.py", "runtime.py"))
METRICS_SRC = (REPO / "siopg" / "metrics.py").read_text()


def known_env(name: str) -> bool:
    """An env var the supervisor or the worker reads (the database's is in siopg.runtime)."""
    return f'"{name}"' in CONFIG_SRC


def test_compose_file():
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "siopg", "prometheus", "grafana"}
    siopg = services["siopg"]
    assert siopg["depends_on"]["postgres"]["condition"] == "service_healthy"
    env = siopg["environment"]
    assert all(known_env(k) for k in env), [k for k in env if not known_env(k)]
    assert "@postgres:5432/" in env["SIOPG_DATABASE_URL"]
    pg = services["postgres"]["environment"]
    assert f"{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}" in env["SIOPG_DATABASE_URL"]
    assert int(env["SIOPG_WORKERS"]) > 1
    assert any(path in " ".join(siopg["healthcheck"]["test"]) for path in HEALTH_PATHS)
    grace = float(env["SIOPG_GRACE"])
    assert float(siopg["stop_grace_period"].rstrip("s")) > grace
    # build context and Dockerfile exist, and the Dockerfile copies real paths
    build = siopg["build"]
    context = (DEPLOY / "docker" / build["context"]).resolve()
    assert context == REPO
    dockerfile = (context / build["dockerfile"]).read_text()
    for src in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        for part in src.split():
            assert (REPO / part).exists(), part
    # mounted files exist; Prometheus scrapes the siopg service on its port
    for svc in ("prometheus", "grafana"):
        for vol in services[svc].get("volumes", []):
            host = vol.split(":")[0]
            assert (DEPLOY / "docker" / host).exists(), host
    prom = yaml.safe_load((DEPLOY / "docker" / "prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"siopg:{env['SIOPG_PORT']}"]
    assert env["SIOPG_METRICS"] == "1"  # /metrics is opt-in: the scraped server must turn it on


def test_grafana_dashboard_is_the_generated_one():
    """The compose recipe provisions the dashboard dashboard/build_grafana.py writes (whose
    metrics tests/unit/test_dashboard.py checks against a real server's /metrics)."""
    provisioned = DEPLOY / "docker" / "grafana" / "provisioning" / "dashboards" / "siopg.json"
    generated = REPO / "dashboard" / "grafana-siopg.json"
    assert json.loads(provisioned.read_text()) == json.loads(generated.read_text())


def _k8s_docs() -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_kubernetes_manifests():
    docs = {d["kind"]: d for d in _k8s_docs()}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "Ingress"} <= set(docs)
    dep, svc, cm = docs["Deployment"], docs["Service"], docs["ConfigMap"]
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["sessionAffinity"] == "ClientIP"
    (container,) = pod["spec"]["containers"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(cm["data"]["SIOPG_PORT"]) == port_names["http"]
    assert cm["data"]["SIOPG_METRICS"] == "1"  # the pod is annotated for scraping
    assert svc["spec"]["ports"][0]["targetPort"] in port_names
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in HEALTH_PATHS and get["port"] in port_names, probe
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert all(known_env(k) for k in cm["data"]), list(cm["data"])
    assert [e["name"] for e in container["env"]] == ["SIOPG_DATABASE_URL"]
    assert container["envFrom"][0]["configMapRef"]["name"] == cm["metadata"]["name"]
    # drain fits: preStop sleep + SIOPG_GRACE (+ kill margin) < terminationGracePeriodSeconds
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert sleep + float(cm["data"]["SIOPG_GRACE"]) + 2 < pod["spec"]["terminationGracePeriodSeconds"]
    backend = docs["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == svc["metadata"]["name"] and backend["port"]["name"] == svc["spec"]["ports"][0]["name"]


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl not installed")
def test_kustomize_builds():
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(out.stdout) if d]
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Ingress", "PodDisruptionBudget", "Service"]


def test_systemd_unit(tmp_path):
    unit = (DEPLOY / "systemd" / "siopg.service").read_text()
    keys = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    assert keys["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert keys["KillMode"] == "mixed" and keys["KillSignal"] == "SIGTERM"
    env = dict(re.findall(r"^(\w+)=(.*)$", (DEPLOY / "systemd" / "siopg.env.example").read_text(), re.M))
    assert all(known_env(k) or k == "SIOPG_APP" for k in env), env
    assert float(keys["TimeoutStopSec"]) > float(env["SIOPG_GRACE"]) + 2
    assert "--check" in keys["ExecStartPre"]
    if shutil.which("systemd-analyze"):
        copy = tmp_path / "siopg.service"
        copy.write_text(unit.replace("/srv/siopg/venv/bin/siopg", "/bin/true"))
        out = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "Unknown" not in out.stderr, out.stderr


def test_nginx_config_syntax(tmp_path):
    """`nginx -t` on the shipped config (test_nginx.py runs it for real)."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx not installed")
    from test_nginx import render_config

    conf = render_config(tmp_path, 1, 2, 3, 4)
    out = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
