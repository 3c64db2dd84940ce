"""The Helm chart helm/medvision, rendered by Helm v4 (helm-python-sdk) with the three CI
value sets: lint, Kubernetes schema validation (kubernetes-validate, offline), structure of
the CRD objects (ScaledObject, ServiceMonitor, PrometheusRule: no built-in schema exists for
them, so they are checked here field by field) and the chart's policies."""

from __future__ import annotations

import base64
import copy
import json

import pytest
import yaml

from control.config import Settings
from tests.deploy.conftest import (
    CHART,
    DASHBOARDS,
    NAMESPACE,
    RULES_FILE,
    VALUE_SETS,
    by_kind,
    component,
    load_values,
    named,
    pod_specs,
    promql_metric_names,
    split_manifests,
)

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CRD_KINDS = {"ScaledObject", "ServiceMonitor", "PrometheusRule"}
#: Containers without probes, and why: jobs (migrations, training) and init containers run
#: to completion.
NO_PROBES = {"migrate", "train"}


def containers(spec):
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_is_clean(helm, value_set):
    report = helm.lint(str(CHART), load_values(value_set), strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_values_pass_the_schema(chart, value_set):
    chart.validate_schema(load_values(value_set))


@pytest.mark.parametrize("value_set", VALUE_SETS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_kubernetes_schemas(rendered, value_set, version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = [doc for doc in rendered[value_set] if doc["kind"] not in CRD_KINDS]
    assert len(docs) >= 15
    for doc in docs:
        manifest = {key: value for key, value in doc.items() if key != "_template"}
        kubernetes_validate.validate(manifest, version, strict=True)


INVALID_MANIFESTS = [
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "two", "selector": {}, "template": {}},
    },
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80}], "selektor": {"app": "x"}},
    },
]


@pytest.mark.parametrize("bad", INVALID_MANIFESTS, ids=["wrong-type", "unknown-field"])
def test_an_invalid_manifest_fails_validation(bad):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.30.0", strict=True)


def test_value_sets_render_what_they_switch_on(rendered):
    kinds = {name: {doc["kind"] for doc in docs} for name, docs in rendered.items()}
    assert CRD_KINDS.isdisjoint(kinds["default"])
    assert "HorizontalPodAutoscaler" not in kinds["default"] | kinds["gpu-keda"]
    assert {"ScaledObject", "ServiceMonitor", "PrometheusRule", "ConfigMap"} <= kinds["gpu-keda"]
    assert "HorizontalPodAutoscaler" in kinds["external-services"]
    assert "ScaledObject" not in kinds["external-services"]
    assert "Secret" not in {doc["kind"] for doc in rendered["external-services"]}


# --- policies -------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_images_are_pinned(rendered, value_set):
    for where, spec in pod_specs(rendered[value_set]):
        for container in containers(spec):
            image = container["image"]
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
            assert tag and tag != "latest", f"{where}/{container['name']}: {image}"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_container_has_requests_and_limits(rendered, value_set):
    for where, spec in pod_specs(rendered[value_set]):
        for container in containers(spec):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), (
                    f"{where}/{container['name']}: {kind}"
                )


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pods_run_non_root_read_only_without_capabilities(rendered, value_set):
    for where, spec in pod_specs(rendered[value_set]):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] != 0, where
        assert spec["automountServiceAccountToken"] is False, where
        mounted = set()
        for container in containers(spec):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["readOnlyRootFilesystem"] is True, f"{where}/{container['name']}"
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            mounted |= {mount["mountPath"] for mount in container.get("volumeMounts", [])}
            assert "/tmp" in {m["mountPath"] for m in container.get("volumeMounts", [])}, (
                f"{where}/{container['name']}: read-only root without a writable /tmp"
            )
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        assert "emptyDir" in volumes["tmp"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_long_running_containers_have_probes(rendered, value_set):
    checked = 0
    for where, spec in pod_specs(rendered[value_set]):
        for container in spec["containers"]:
            if container["name"] in NO_PROBES:
                continue
            checked += 1
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert probe in container, f"{where}/{container['name']}: {probe}"
    assert checked >= 4


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_api_reads_drift_references_fetched_from_the_model_store(rendered, value_set):
    spec = named(rendered[value_set], "Deployment", component("api"))["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    triton = named(rendered[value_set], "Deployment", component("triton"))
    store = next(
        item["value"]
        for item in triton["spec"]["template"]["spec"]["initContainers"][0]["env"]
        if item["name"] == "MODEL_STORE_URI"
    )
    assert init["command"] == ["python", "/opt/medvision/bin/fetch_models.py"]
    assert init["args"] == [
        "--only",
        "drift_reference.json",
        "--allow-empty",
        store,
        "/var/lib/medvision/models",
    ]
    api = spec["containers"][0]
    env = {item["name"]: item.get("value") for item in api["env"]}
    assert env["MEDVISION_MODEL_REPOSITORY"] == "/var/lib/medvision/models"
    mounts = {mount["name"]: mount for mount in api["volumeMounts"]}
    assert mounts["model-references"]["mountPath"] == "/var/lib/medvision/models"
    assert mounts["model-references"]["readOnly"] is True


def test_worker_serves_its_metrics_on_the_configured_port(rendered):
    worker = named(rendered["default"], "Deployment", component("worker"))
    container = worker["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["MEDVISION_WORKER_METRICS_PORT"] == "9101"
    assert container["ports"] == [{"name": "metrics", "containerPort": 9101, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def test_api_probes_use_health_and_ready(rendered):
    api = named(rendered["default"], "Deployment", component("api"))
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["args"][:1] == ["serve"] and "--no-worker" in container["args"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_control_plane_env_is_known_settings_and_never_migrates(rendered, value_set):
    fields = {f"MEDVISION_{name.upper()}" for name in Settings.model_fields}
    for where, spec in pod_specs(rendered[value_set]):
        for container in spec["containers"]:
            env = {item["name"]: item for item in container.get("env", [])}
            for name in env:
                if name.startswith("MEDVISION_"):
                    assert name in fields, f"{where}: {name} is not a setting"
            if "MEDVISION_DATABASE_URL" in env and container["name"] != "migrate":
                assert env["MEDVISION_MIGRATE_ON_STARTUP"]["value"] == "false", where


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_secret_references_resolve(rendered, value_set):
    values = load_values(value_set)
    existing = {
        values.get(section, {}).get("existingSecret")
        for section in ("database", "redis", "s3", "secretKey")
    } | {
        values.get("database", {}).get("migration", {}).get("existingSecret"),
        values.get("triton", {}).get("modelRepository", {}).get("existingSecret"),
    }
    own = {
        doc["metadata"]["name"]: set(doc["data"]) for doc in by_kind(rendered[value_set], "Secret")
    }
    refs = 0
    for where, spec in pod_specs(rendered[value_set]):
        for container in containers(spec):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if not ref:
                    continue
                refs += 1
                if ref["name"] in own:
                    assert ref["key"] in own[ref["name"]], f"{where}: {ref}"
                else:
                    assert ref["name"] in existing, f"{where}: {ref['name']} is no Secret"
    assert refs >= 10


def test_inline_values_land_in_the_chart_secret(rendered):
    values = load_values("default")
    secret = named(rendered["default"], "Secret", component("env"))
    assert set(secret["data"]) == {"database-url", "redis-url", "access-key", "secret-key"}
    migration = named(rendered["default"], "Secret", component("migrate"))
    assert migration["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    url = base64.b64decode(migration["data"]["migration-database-url"]).decode()
    assert url == values["database"]["migration"]["url"]


# --- migrations ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_migration_job_is_a_pre_install_and_pre_upgrade_hook(rendered, value_set):
    job = named(rendered[value_set], "Job", component("migrate"))
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["db", "upgrade"]
    ref = container["env"][0]["valueFrom"]["secretKeyRef"]
    values = load_values(value_set)
    expected = values["database"].get("migration", {}).get("existingSecret") or component("migrate")
    assert ref["name"] == expected


# --- Triton ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_triton_requests_gpus_on_gpu_nodes(rendered, value_set):
    deployment = named(rendered[value_set], "Deployment", component("triton"))
    spec = deployment["spec"]["template"]["spec"]
    triton = spec["containers"][0]
    gpus = load_values(value_set).get("triton", {}).get("gpu", {}).get("count", 1)
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert triton["resources"]["requests"]["nvidia.com/gpu"] == gpus
    assert (
        "nvidia.com/gpu.present" in spec["nodeSelector"]
        or "nvidia.com/gpu.product" in spec["nodeSelector"]
    )
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert "--model-control-mode=none" in triton["args"]
    assert "--model-repository=/models" in triton["args"]
    shm = next(volume for volume in spec["volumes"] if volume["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_triton_model_repository_comes_from_the_model_store(rendered, value_set):
    spec = named(rendered[value_set], "Deployment", component("triton"))["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    env = {item["name"]: item for item in init["env"]}
    assert init["args"] == ["prepare"]
    assert env["MODEL_STORE_URI"]["value"].startswith("s3://")
    assert env["AWS_ENDPOINT_URL"]["value"].startswith(("http://", "https://"))
    assert "AWS_SECRET_ACCESS_KEY" in env
    mounts = {mount["name"]: mount for mount in spec["containers"][0]["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True


def test_triton_grpc_service_is_headless_by_default_and_clusterip_on_request(rendered):
    default = named(rendered["default"], "Service", component("triton"))
    assert default["spec"]["clusterIP"] == "None"
    assert {port["name"] for port in default["spec"]["ports"]} == {"grpc", "http", "metrics"}
    external = named(rendered["external-services"], "Service", component("triton"))
    assert "clusterIP" not in external["spec"] and external["spec"]["type"] == "ClusterIP"


def test_services_and_budgets_select_existing_pods(rendered):
    for value_set, docs in rendered.items():
        pod_labels = [
            doc["spec"]["template"]["metadata"]["labels"] for doc in by_kind(docs, "Deployment")
        ]
        for kind in ("Service", "PodDisruptionBudget"):
            for doc in by_kind(docs, kind):
                selector = doc["spec"]["selector"]
                selector = selector.get("matchLabels", selector)
                assert any(selector.items() <= labels.items() for labels in pod_labels) or (
                    doc["metadata"]["name"] == component("training")
                ), f"{value_set} {kind} {doc['metadata']['name']}"
        budgets = {doc["metadata"]["name"] for doc in by_kind(docs, "PodDisruptionBudget")}
        assert budgets == {component(name) for name in ("api", "worker", "dicom", "triton")}


def test_ingress_routes_to_the_api_service(rendered):
    (ingress,) = by_kind(rendered["gpu-keda"], "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == component("api")
    named(rendered["gpu-keda"], "Service", backend["name"])
    assert ingress["spec"]["tls"][0]["hosts"] == ["medvision.hospital.example"]


# --- network policies -------------------------------------------------------------------------


def _policies(docs):
    return {doc["metadata"]["name"]: doc for doc in by_kind(docs, "NetworkPolicy")}


def _egress_ports(policy):
    return {
        port["port"] for rule in policy["spec"].get("egress", []) for port in rule.get("ports", [])
    }


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_network_policies_deny_by_default(rendered, value_set):
    policies = _policies(rendered[value_set])
    deny = policies[component("default-deny")]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    workloads = {
        doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        for doc in rendered[value_set]
        if doc["kind"] in {"Deployment", "Job"}
    }
    selected = {
        policy["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
        for policy in policies.values()
    }
    assert workloads <= selected


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_only_api_worker_listener_and_migrations_reach_the_database(rendered, value_set):
    policies = _policies(rendered[value_set])
    db_port = 5432
    reaching = {name for name, policy in policies.items() if db_port in _egress_ports(policy)}
    assert reaching == {component(name) for name in ("api", "worker", "dicom", "migrate")}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_only_the_worker_reaches_triton(rendered, value_set):
    policy = _policies(rendered[value_set])[component("triton")]
    grpc_rules = [
        rule
        for rule in policy["spec"]["ingress"]
        if 8001 in {port["port"] for port in rule["ports"]}
    ]
    (rule,) = grpc_rules
    sources = [
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in rule["from"]
    ]
    assert sources == ["worker"]
    for name, other in _policies(rendered[value_set]).items():
        for egress in other["spec"].get("egress", []):
            for peer in egress.get("to", []):
                target = peer.get("podSelector", {}).get("matchLabels", {})
                if target.get("app.kubernetes.io/component") == "triton":
                    assert name == component("worker"), name


def test_allowing_the_api_to_triton_is_one_switch(chart):
    values = load_values("default")
    values["networkPolicy"] = {"allowApiToTriton": True}
    docs = [
        doc
        for doc in yaml.safe_load_all(
            chart.render(values, name="mv", namespace=NAMESPACE, is_install=True)[
                "medvision/templates/networkpolicy.yaml"
            ]
        )
        if doc
    ]
    triton = next(doc for doc in docs if doc["metadata"]["name"] == component("triton"))
    sources = [
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in triton["spec"]["ingress"][0]["from"]
    ]
    assert sources == ["worker", "api"]


# --- autoscaling (CRDs checked structurally) --------------------------------------------------


def test_keda_scales_triton_on_queue_time_and_workers_on_queue_depth(rendered):
    docs = rendered["gpu-keda"]
    deployments = {doc["metadata"]["name"]: doc for doc in by_kind(docs, "Deployment")}
    scaled = {doc["metadata"]["name"]: doc for doc in by_kind(docs, "ScaledObject")}
    assert set(scaled) == {component("triton"), component("worker")}
    for name, doc in scaled.items():
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        spec = doc["spec"]
        assert spec["scaleTargetRef"]["name"] in deployments
        assert "replicas" not in deployments[spec["scaleTargetRef"]["name"]]["spec"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "prometheus"
        assert set(trigger["metadata"]) >= {"serverAddress", "query", "threshold"}
        assert float(trigger["metadata"]["threshold"]) > 0
        assert f'namespace="{NAMESPACE}"' in trigger["metadata"]["query"]
    triton = scaled[component("triton")]["spec"]["triggers"][0]
    assert promql_metric_names(triton["metadata"]["query"]) == {
        "nv_inference_queue_duration_us",
        "nv_inference_request_success",
    }
    assert triton["metricType"] == "Value"
    assert triton["metadata"]["threshold"] == "30000"
    worker = scaled[component("worker")]["spec"]["triggers"][0]
    assert promql_metric_names(worker["metadata"]["query"]) == {"medvision_jobs_queue_depth"}
    assert worker["metricType"] == "AverageValue"


def test_hpa_engine_uses_external_metrics(rendered):
    hpas = {
        doc["metadata"]["name"]: doc
        for doc in by_kind(rendered["external-services"], "HorizontalPodAutoscaler")
    }
    assert set(hpas) == {component("triton"), component("worker")}
    metric = hpas[component("worker")]["spec"]["metrics"][0]["external"]["metric"]
    assert metric["name"] == "medvision_jobs_queue_depth"
    assert hpas[component("triton")]["spec"]["metrics"][0]["external"]["target"]["type"] == "Value"


# --- monitoring objects (CRDs checked structurally) -------------------------------------------


def test_service_monitors_scrape_named_ports_of_existing_services(rendered):
    docs = rendered["gpu-keda"]
    services = {doc["metadata"]["name"]: doc for doc in by_kind(docs, "Service")}
    monitors = by_kind(docs, "ServiceMonitor")
    assert {doc["metadata"]["name"] for doc in monitors} == {
        component("api"),
        component("worker"),
        component("triton"),
    }
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        selector = monitor["spec"]["selector"]["matchLabels"]
        service = services[monitor["metadata"]["name"]]
        assert selector.items() <= service["metadata"]["labels"].items()
        ports = {port["name"] for port in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports and endpoint["path"] == "/metrics"


def test_prometheus_rule_is_the_shared_rules_file(rendered):
    (rule,) = by_kind(rendered["gpu-keda"], "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert set(item) <= {"alert", "expr", "for", "labels", "annotations", "record"}


def test_dashboards_are_configmaps_for_the_grafana_sidecar(rendered):
    maps = [
        doc
        for doc in by_kind(rendered["gpu-keda"], "ConfigMap")
        if "dashboard" in doc["metadata"]["name"]
    ]
    files = {path.name: json.loads(path.read_text()) for path in DASHBOARDS.glob("*.json")}
    assert len(maps) == len(files) == 3
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = config_map["data"].items()
        assert json.loads(text) == files[key]


# --- training ---------------------------------------------------------------------------------


def test_training_job_is_off_by_default(rendered):
    assert [doc["metadata"]["name"] for doc in by_kind(rendered["default"], "Job")] == [
        component("migrate")
    ]


def test_training_job_runs_torchrun_ddp_across_nodes(rendered):
    job = named(rendered["gpu-keda"], "Job", component("training"))
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 2
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == component("training")
    named(rendered["gpu-keda"], "Service", component("training"))
    container = pod["containers"][0]
    assert container["command"] == ["torchrun"]
    args = container["args"]
    assert "--nnodes=2" in args and "--nproc-per-node=4" in args
    assert "--node-rank=$(JOB_COMPLETION_INDEX)" in args
    assert f"--master-addr={component('training')}-0.{component('training')}" in args
    assert args[args.index("-m") + 1 : args.index("-m") + 4] == ["control.cli.main", "train", "cxr"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["MLFLOW_TRACKING_URI"].startswith("http")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4


# --- values.schema.json -------------------------------------------------------------------------


def _without(values, *path):
    out = copy.deepcopy(values)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


def _with(values, value, *path):
    out = copy.deepcopy(values)
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return out


BAD_VALUES = [
    ("no database url or secret", lambda v: _without(v, "database", "url")),
    ("a MySQL database url", lambda v: _with(v, "mysql://u@h/db", "database", "url")),
    ("no redis", lambda v: _without(v, "redis", "url")),
    ("S3 without keys", lambda v: _with(v, "", "s3", "secretKey")),
    ("a short secret key", lambda v: _with(v, "short", "secretKey", "value")),
    ("the latest tag", lambda v: _with(v, "latest", "images", "control", "tag")),
    ("an unknown autoscaling engine", lambda v: _with(v, "vpa", "autoscaling", "engine")),
    ("an unknown model control mode", lambda v: _with(v, "auto", "triton", "modelControlMode")),
    (
        "a model store that is not s3://",
        lambda v: _with(v, "gs://b/p", "triton", "modelRepository", "storeUri"),
    ),
    (
        "a container without limits (null deletes the default)",
        lambda v: _with(v, None, "api", "resources", "limits"),
    ),
    (
        "root filesystem writable",
        lambda v: _with(v, False, "containerSecurityContext", "readOnlyRootFilesystem"),
    ),
    ("a typo at the top level", lambda v: _with(v, 3, "replicaCount")),
    ("an AE title over 16 characters", lambda v: _with(v, "A" * 17, "dicom", "aeTitle")),
]


@pytest.mark.parametrize(("why", "change"), BAD_VALUES, ids=[case[0] for case in BAD_VALUES])
def test_schema_rejects_bad_values(helm, chart, why, change):
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(change(load_values("default")))


def test_schema_refuses_to_render_without_a_database(helm, chart):
    values = _without(load_values("default"), "database", "url")
    with pytest.raises(helm.HelmError):
        chart.render(values, name="mv", namespace=NAMESPACE, is_install=True)


def test_optional_components_switch_off_cleanly(chart):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    values = load_values("default")
    values.update(
        dicom={"enabled": False},
        triton={"enabled": False},
        migrations={"enabled": False},
        autoscaling={"engine": "keda"},
    )
    rendered = chart.render(values, name="medvision", namespace=NAMESPACE, is_install=True)
    docs = split_manifests(rendered)
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    assert ("Deployment", "medvision-api") in names and ("Deployment", "medvision-worker") in names
    assert not [name for kind, name in names if "triton" in name or "dicom" in name]
    assert [doc["metadata"]["name"] for doc in by_kind(docs, "ScaledObject")] == [
        "medvision-worker"
    ]
    for doc in docs:
        if doc["kind"] not in CRD_KINDS:
            manifest = {key: value for key, value in doc.items() if key != "_template"}
            kubernetes_validate.validate(manifest, "1.30.0", strict=True)


def test_image_pull_secrets_reach_every_pod(chart):
    values = load_values("gpu-keda")
    values["imagePullSecrets"] = [{"name": "registry-credentials"}]
    docs = split_manifests(chart.render(values, name="mv", namespace=NAMESPACE, is_install=True))
    specs = pod_specs(docs)
    assert len(specs) >= 6
    for where, spec in specs:
        assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}], where


def test_triton_joins_traces_only_when_asked(rendered):
    def triton_args(value_set):
        deployment = named(rendered[value_set], "Deployment", component("triton"))
        return deployment["spec"]["template"]["spec"]["containers"][0]["args"]

    assert not [arg for arg in triton_args("default") if arg.startswith("--trace-config")]
    args = triton_args("external-services")
    assert "--trace-config=mode=opentelemetry" in args
    assert "--trace-config=rate=0" in args and "--trace-config=count=-1" in args
    url = load_values("external-services")["otel"]["tritonEndpoint"]
    assert f"--trace-config=opentelemetry,url={url}" in args
    api = named(rendered["external-services"], "Deployment", component("api"))
    env = {
        item["name"]: item.get("value")
        for item in api["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert (
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] == load_values("external-services")["otel"]["endpoint"]
    )
    assert "OTEL_SERVICE_NAME" not in env
