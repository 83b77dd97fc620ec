"""Access control on the real server: mutual TLS on gRPC (plaintext, untrusted and
certificate-less clients refused), the model-control API closed by default and, when
opened, refused without the admin key."""

import subprocess

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from polyrank.client import RerankClient, RerankError
from polyrank.server import ADMIN_GRPC_HEADER, EmbeddedTritonServer, ServerConfig

ADMIN_KEY = "test-admin-key-0123456789"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def authority(folder, name):
    """A CA, and a certificate for 127.0.0.1 plus a client certificate signed by it."""
    folder.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}-ca",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for role in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}-{role}",
                "-keyout", f"{role}.key", "-out", f"{role}.csr", cwd=folder)
        openssl("x509", "-req", "-in", f"{role}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "1", "-out", f"{role}.pem", "-extfile", "san.ext", cwd=folder)
    return folder


def server_config(repository, tmp_path_factory, **settings):
    return ServerConfig(
        repository=repository, grpc_port=0, http_port=0, metrics_port=0, startup_timeout_s=120,
        log_path=tmp_path_factory.mktemp("triton-access") / "tritonserver.log", **settings,
    )


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    root = tmp_path_factory.mktemp("certificates")
    return authority(root / "trusted", "polyrank"), authority(root / "untrusted", "intruder")


@pytest.fixture(scope="module")
def mtls_server(tiny_repository, certificates, tmp_path_factory):
    trusted, _ = certificates
    config = server_config(
        tiny_repository, tmp_path_factory,
        tls_cert=trusted / "server.pem", tls_key=trusted / "server.key", tls_ca=trusted / "ca.pem",
    )
    with EmbeddedTritonServer(config) as server:
        yield server


def client(server, **tls):
    return RerankClient(server.grpc_url, timeout_s=5, retry_deadline_s=0, **{k: str(v) for k, v in tls.items()})


def test_trusted_client_certificate_is_served(mtls_server, certificates):
    trusted, _ = certificates
    with client(mtls_server, tls_ca=trusted / "ca.pem", tls_cert=trusted / "client.pem", tls_key=trusted / "client.key") as c:
        assert len(c.rerank("shoes", ["running shoes", "coffee"])) == 2


@pytest.mark.parametrize("who", ["plaintext", "TLS without a client certificate", "client certificate from another CA"])
def test_other_clients_are_refused(mtls_server, certificates, who):
    trusted, untrusted = certificates
    tls = {
        "plaintext": {},
        "TLS without a client certificate": {"tls_ca": trusted / "ca.pem"},
        "client certificate from another CA": {
            "tls_ca": trusted / "ca.pem", "tls_cert": untrusted / "client.pem", "tls_key": untrusted / "client.key"
        },
    }[who]
    with client(mtls_server, **tls) as c:
        with pytest.raises(RerankError):
            c.rerank("shoes", ["running shoes"])


def test_plain_http_keeps_only_readiness(mtls_server):
    import urllib.error
    import urllib.request

    base = f"http://127.0.0.1:{mtls_server.http_port}"
    assert urllib.request.urlopen(f"{base}/v2/health/ready", timeout=5).status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/v2/models/rerank/config", timeout=5)
    assert refused.value.code in (401, 403)


def test_model_control_is_closed_by_default(triton_server):
    raw = grpcclient.InferenceServerClient(triton_server.grpc_url)
    with pytest.raises(InferenceServerException, match="explicit model load / unload is not allowed"):
        raw.load_model("rerank")
    raw.close()


def test_model_control_needs_the_admin_key(tiny_repository, tmp_path_factory):
    config = server_config(tiny_repository, tmp_path_factory, admin_key=ADMIN_KEY)
    with EmbeddedTritonServer(config) as server:
        raw = grpcclient.InferenceServerClient(server.grpc_url)
        for headers in (None, {ADMIN_GRPC_HEADER: "wrong-key-0123456789"}):
            with pytest.raises(InferenceServerException, match="This protocol is restricted") as refused:
                raw.unload_model("rerank", headers=headers)
            assert refused.value.status() == "StatusCode.UNAVAILABLE"
        raw.load_model("rerank", headers={ADMIN_GRPC_HEADER: ADMIN_KEY})  # reloads: the key opens it
        assert raw.is_model_ready("rerank")
        with RerankClient(server.grpc_url, retry_deadline_s=10) as c:  # inference needs no key
            assert np.isfinite(c.score("shoes", ["running shoes"])).all()
        raw.close()


def test_bad_access_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="needs both a certificate and its key"):
        ServerConfig(repository=tmp_path, tls_cert=tmp_path / "c.pem")
    with pytest.raises(ValueError, match="at least 16 characters"):
        ServerConfig(repository=tmp_path, admin_key="short")


def test_serve_refuses_model_control_without_a_key(tiny_repository, monkeypatch, capsys):
    from polyrank.cli import main

    monkeypatch.delenv("POLYRANK_ADMIN_KEY", raising=False)
    assert main(["serve", "--repository", str(tiny_repository), "--model-control"]) == 1
    assert capsys.readouterr().err.strip() == (
        "polyrank serve: error: --model-control needs the admin key in POLYRANK_ADMIN_KEY (16 characters or more)"
    )


def test_gateway_speaks_mutual_tls_on_both_sides(mtls_server, certificates):
    """HTTPS with client certificates in front, mutual TLS to Triton behind."""
    import requests

    from polyrank.gateway.app import GatewaySettings
    from polyrank.gateway.server import GatewayServer, Listener

    trusted, untrusted = certificates
    settings = GatewaySettings(
        triton_url=mtls_server.grpc_url, tls_ca=str(trusted / "ca.pem"),
        tls_cert=str(trusted / "client.pem"), tls_key=str(trusted / "client.key"),
    )
    listener = Listener(port=0, tls_cert=str(trusted / "server.pem"), tls_key=str(trusted / "server.key"), tls_ca=str(trusted / "ca.pem"))
    body = {"model": "rerank", "query": "shoes", "documents": ["running shoes", "coffee"]}
    with GatewayServer(settings, listener) as api:
        assert api.url.startswith("https://")
        answer = requests.post(f"{api.url}/v2/rerank", json=body, timeout=30, verify=str(trusted / "ca.pem"),
                               cert=(str(trusted / "client.pem"), str(trusted / "client.key")))
        assert answer.status_code == 200 and len(answer.json()["results"]) == 2
        for refused in ({"cert": None}, {"cert": (str(untrusted / "client.pem"), str(untrusted / "client.key"))}):
            # TLS 1.3 checks the client certificate after the handshake: the client sees the
            # server's alert (SSLError) or, when the close wins the race, the connection aborted.
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.post(f"{api.url}/v2/rerank", json=body, timeout=30, verify=str(trusted / "ca.pem"), **refused)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(api.url.replace("https", "http") + "/v2/rerank", json=body, timeout=30)
