"""deploy/kubernetes/: every manifest valid for the Kubernetes API (kubernetes-validate, strict:
an unknown field is an error), the ServiceMonitor (a Prometheus Operator CRD, not in those
schemas) checked by its structure, and the pieces agreeing with each other, with the image and
with jitprov: probes on the real health routes, the migration command, the settings, the
forward-auth annotations."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from starlette.testclient import TestClient

from jitprov.cli.main import main
from jitprov.protocols.scim import discovery
from jitprov.services.context import ServiceContext
from jitprov.settings import Settings, SettingsError, load_operations, load_settings
from jitprov.testing.builders import setup_connection
from tests.conftest import TEST_SECRET_KEY
from tests.web.helpers import make_client, sign_in

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
SETTINGS = REPO / "src" / "jitprov" / "settings.py"
#: the oldest Kubernetes release the manifests target, and the newest the validator knows
VERSIONS = ["1.30", kubernetes_validate.latest_version()]
NAMESPACE = "jitprov"  # docs/deployment.md: `kubectl create namespace jitprov`
CRD_GROUPS = ("monitoring.coreos.com/",)


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]


def everything() -> list[tuple[str, dict[str, Any]]]:
    return [(str(path.relative_to(K8S)), doc) for path in sorted(K8S.rglob("*.yaml"))
            for doc in load(path)]


def one(kind: str, name: str | None = None, folder: str = "") -> dict[str, Any]:
    [found] = [doc for file, doc in everything() if doc["kind"] == kind
               and (name is None or doc["metadata"]["name"] == name)
               and file.startswith(folder)]
    return found


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def container(workload: dict[str, Any]) -> dict[str, Any]:
    [only] = pod_spec(workload)["containers"]
    return only  # type: ignore[no-any-return]


def environment(*, secret_values: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a jitprov pod: the ConfigMap and the Secret (envFrom), and any
    ``env`` entries, with the Secret's values replaced by ``secret_values`` when given."""
    env: dict[str, str] = dict(one("ConfigMap", "jitprov")["data"])
    env.update(one("Secret", "jitprov")["stringData"])
    env.update({e["name"]: e.get("value", "") for e in container(one("Deployment")).get("env", [])})
    env.update(secret_values or {})
    return env


# -- the API schemas ---------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_every_core_manifest_is_valid_for_the_kubernetes_api(version: str) -> None:
    validated = set()
    for file, doc in everything():
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(p) for p in error.path)
            pytest.fail(f"{file}: {doc['kind']} {where}: {error.message}")
        validated.add(doc["kind"])
    assert validated == {"Secret", "ConfigMap", "Job", "Deployment", "Service", "Ingress",
                         "PodDisruptionBudget"}


def test_the_validation_is_strict_enough_to_catch_a_typo() -> None:
    broken = copy.deepcopy(one("Deployment"))
    container(broken)["readinesProbe"] = container(broken).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


#: the part of the Prometheus Operator's ServiceMonitor CRD (monitoring.coreos.com/v1) these
#: manifests use; the CRD's schema is not in kubernetes-validate
SERVICE_MONITOR = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "spec": {
            "type": "object", "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {"type": "object", "required": ["matchLabels"],
                             "properties": {"matchLabels": {"type": "object"}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False, "required": ["port"],
                    "properties": {
                        "port": {"type": "string"}, "path": {"type": "string"},
                        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        "authorization": {
                            "type": "object", "additionalProperties": False,
                            "properties": {
                                "type": {"const": "Bearer"},
                                "credentials": {
                                    "type": "object", "required": ["name", "key"],
                                    "additionalProperties": False,
                                    "properties": {"name": {"type": "string"},
                                                   "key": {"type": "string"}}}}}}}},
            }},
    },
}


def test_the_service_monitor_scrapes_every_pod_with_the_metrics_token() -> None:
    monitor = one("ServiceMonitor", folder="monitoring/")
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):  # hence the check below
        kubernetes_validate.validate(monitor, VERSIONS[-1], strict=True)
    jsonschema.validate(monitor, SERVICE_MONITOR)
    service = one("Service", "jitprov")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    credentials = endpoint["authorization"]["credentials"]
    assert credentials == {"name": "jitprov", "key": "JITPROV_METRICS_TOKEN"}
    assert credentials["key"] in one("Secret", credentials["name"])["stringData"]


# -- the workloads -----------------------------------------------------------------------------

def test_the_probes_are_the_health_routes_and_the_port_is_the_images(
        ctx: ServiceContext) -> None:
    deployment = one("Deployment", "jitprov")
    server = container(deployment)
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert server["startupProbe"]["httpGet"]["path"] == "/healthz"
    [port] = server["ports"]
    args = server["args"]
    assert port["containerPort"] == int(args[args.index("--port") + 1])
    assert f"EXPOSE {port['containerPort']}" in (REPO / "Dockerfile").read_text("utf-8")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert server[probe]["httpGet"]["port"] == port["name"]
    # /readyz waits for the database up to its connect timeout before answering 503
    assert server["readinessProbe"]["timeoutSeconds"] > Settings().db_connect_timeout
    with make_client(ctx) as app:
        assert app.get("/healthz").status_code == 200
        assert app.get("/readyz").status_code == 200


def test_the_job_migrates_and_the_pods_serve_with_real_commands(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    job, deployment = one("Job", "jitprov-migrate"), one("Deployment", "jitprov")
    migrate = container(job)
    assert migrate["args"] == ["db", "upgrade"]
    assert migrate["image"] == container(deployment)["image"], "the same release"
    assert migrate["envFrom"] == container(deployment)["envFrom"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    with pytest.raises(SystemExit) as exited:
        main([*migrate["args"], "--database-url", f"sqlite:///{tmp_path / 'k.db'}"])
    assert exited.value.code in (0, None)
    args = container(deployment)["args"]
    assert args[0] == "serve"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main([args[0], "--help"])
    assert exited.value.code in (0, None)
    usage = capsys.readouterr().out
    for option in (a for a in args if a.startswith("--")):
        assert option in usage, f"jitprov serve has no {option}"
    assert args[args.index("--host") + 1] == "0.0.0.0"  # noqa: S104


def test_the_pods_run_as_the_images_unprivileged_user() -> None:
    uid = re.search(r"useradd [^\n]*--uid (\d+)", (REPO / "Dockerfile").read_text("utf-8"))
    assert uid is not None
    for workload in (one("Deployment", "jitprov"), one("Job", "jitprov-migrate")):
        security = pod_spec(workload)["securityContext"]
        assert (security["runAsNonRoot"], security["runAsUser"]) == (True, int(uid.group(1)))
        assert container(workload)["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod_spec(workload)["automountServiceAccountToken"] is False
    deployment = one("Deployment", "jitprov")
    server = container(deployment)
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    # serve writes its Prometheus multiprocess files to a fresh directory under /tmp
    [tmp] = [m for m in server["volumeMounts"] if m["mountPath"] == "/tmp"]  # noqa: S108
    [volume] = [v for v in pod_spec(deployment)["volumes"] if v["name"] == tmp["name"]]
    assert volume["emptyDir"]["medium"] == "Memory"


def test_the_service_the_budget_and_the_ingress_reach_the_server_pods_only() -> None:
    deployment, job = one("Deployment", "jitprov"), one("Job", "jitprov-migrate")
    pods = deployment["spec"]["template"]["metadata"]["labels"]
    service, budget = one("Service", "jitprov"), one("PodDisruptionBudget", "jitprov")
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pods.items()
    for selector in (service["spec"]["selector"], budget["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= pods.items()
        assert not selector.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    args = container(deployment)["args"]
    assert args[args.index("--workers") + 1] == "2"
    [port] = service["spec"]["ports"]
    assert port["targetPort"] == container(deployment)["ports"][0]["name"]
    ingress = one("Ingress", "jitprov", folder="ingress")
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "jitprov", "port": {"name": port["name"]}}
    assert rule["host"] == urlsplit(environment()["JITPROV_BASE_URL"]).hostname
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]
    body = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert int(body.rstrip("m")) * 1024 * 1024 > discovery.MAX_PAYLOAD_SIZE, \
        "a full SCIM Bulk request must get through (jitprov answers 413 past it)"


# -- the settings ------------------------------------------------------------------------------

def test_every_jitprov_variable_of_the_manifests_is_a_setting() -> None:
    known = set(re.findall(r"JITPROV_[A-Z0-9_]+", SETTINGS.read_text("utf-8")))
    for path in sorted(K8S.rglob("*.yaml")):
        for name in re.findall(r"JITPROV_[A-Z0-9_]+", path.read_text("utf-8")):
            assert name in known, f"{path.name}: {name} is not a setting (settings.py)"
    assert {"JITPROV_SECRET_KEY", "JITPROV_DATABASE_URL", "JITPROV_BASE_URL"} <= set(
        environment())


def test_the_secret_ships_placeholders_that_jitprov_refuses() -> None:
    secret = one("Secret", "jitprov")
    assert set(secret["stringData"]) == {"JITPROV_SECRET_KEY", "JITPROV_DATABASE_URL",
                                         "JITPROV_METRICS_TOKEN"}
    assert all("REPLACE_ME" in value for value in secret["stringData"].values())
    with pytest.raises(SettingsError, match="JITPROV_SECRET_KEY"):
        load_settings(environment())
    with pytest.raises(SettingsError, match="JITPROV_METRICS_TOKEN"):
        load_operations(environment())


def test_filled_in_the_manifests_configure_a_server_that_starts() -> None:
    env = environment(secret_values={
        "JITPROV_SECRET_KEY": TEST_SECRET_KEY, "JITPROV_METRICS_TOKEN": "0123456789abcdef",
        "JITPROV_DATABASE_URL": "postgresql://jitprov:s3cret@postgresql:5432/jitprov"})
    settings = load_settings(env)
    ops = load_operations(env)
    assert settings.base_url == "https://sso.example.org"
    assert settings.database_url.startswith("postgresql")
    assert ops.log_format == "json" and ops.trusted_proxies == ("10.0.0.0/8",)
    app_host = one("Ingress", folder="examples/")["spec"]["rules"][0]["host"]
    assert app_host in env["JITPROV_ALLOWED_RETURN_HOSTS"].split(",")
    assert app_host.endswith("." + env["JITPROV_COOKIE_DOMAIN"])


# -- forward-auth ------------------------------------------------------------------------------

def test_the_app_ingress_asks_jitprov_and_passes_the_headers_it_answers(
        ctx: ServiceContext) -> None:
    annotations = one("Ingress", folder="examples/")["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    auth_url = urlsplit(annotations[prefix + "auth-url"])
    assert auth_url.hostname == f"{one('Service', 'jitprov')['metadata']['name']}.{NAMESPACE}" \
        ".svc.cluster.local"
    assert auth_url.path == "/auth/verify"
    signin = urlsplit(annotations[prefix + "auth-signin"])
    assert f"{signin.scheme}://{signin.hostname}" == environment()["JITPROV_BASE_URL"]
    assert re.fullmatch(r"/sso/[a-z0-9-]+/login", signin.path)
    assert annotations[prefix + "auth-signin-redirect-param"] == "return_to"
    passed = annotations[prefix + "auth-response-headers"].split(",")
    setup_connection(ctx)
    sso: TestClient
    with make_client(ctx) as sso:
        def ask() -> Any:
            """What ingress-nginx does: the auth-url's path and query, with the browser's
            cookies and X-Original-URL."""
            return sso.get(f"{auth_url.path}?{auth_url.query}",
                           headers={"X-Original-URL": "https://rota.example.org/rota"})

        assert ask().status_code == 401  # not signed in: to auth-signin
        assert sso.get("/sso/idp/login", params={"return_to": "/rota"}).status_code == 303
        sign_in(sso)
        answer = ask()
        assert answer.status_code == 200
        assert parse_qs(auth_url.query) == {"role": ["nurse"]}  # Ana is a nurse
        for header in passed:
            assert answer.headers.get(header), f"jitprov does not answer {header}"
        assert "X-Jitprov-Token" in passed


def test_the_deployment_guide_lists_every_manifest_and_the_namespace() -> None:
    guide = (REPO / "docs" / "deployment.md").read_text("utf-8")
    section = guide[guide.index("## Kubernetes"):]
    section = section[:section.index("\n## ", 1)]
    for path in sorted(K8S.rglob("*.yaml")):
        assert f"`{path.relative_to(K8S).as_posix()}`" in section, path.name
    assert f"kubectl create namespace {NAMESPACE}" in section
    server = container(one("Deployment", "jitprov"))
    assert f"a {server['readinessProbe']['timeoutSeconds']} s timeout" in section
