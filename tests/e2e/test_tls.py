"""TLS and mutual TLS on a real ``modelgate serve``, with certificates the test makes (trustme)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import trustme

from gateway.protos import open_inference_grpc_pb2 as pb
from gateway.protos import open_inference_grpc_pb2_grpc as pb_grpc
from tests.e2e.server_process import ServerProcess

pytestmark = pytest.mark.e2e


class Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""

    def __init__(self, where: Path) -> None:
        self.ca = trustme.CA()
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        client = self.ca.issue_cert("client@example.test")
        self.ca_pem = where / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        self.server_cert, self.server_key = where / "server.pem", where / "server.key"
        server.cert_chain_pems[0].write_to_path(str(self.server_cert))
        server.private_key_pem.write_to_path(str(self.server_key))
        self.client_cert, self.client_key = where / "client.pem", where / "client.key"
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        client.private_key_pem.write_to_path(str(self.client_key))

    def server_args(self, mutual: bool) -> list[str]:
        args = ["--tls-cert", str(self.server_cert), "--tls-key", str(self.server_key)]
        return [*args, "--tls-client-ca", str(self.ca_pem)] if mutual else args

    def client_context(self, with_cert: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_pem))
        if with_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def grpc_credentials(self, with_cert: bool) -> grpc.ChannelCredentials:
        root = self.ca_pem.read_bytes()
        if not with_cert:
            return grpc.ssl_channel_credentials(root)
        return grpc.ssl_channel_credentials(root, self.client_key.read_bytes(), self.client_cert.read_bytes())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def _tls_server(repo: Path, pki: Pki, mutual: bool) -> ServerProcess:
    context = pki.client_context(with_cert=True)
    return ServerProcess(repo, *pki.server_args(mutual), ready_url_scheme="https", ready_context=context)


@pytest.fixture(scope="module")
def tls_server(demo_repo: Path, pki: Pki) -> Iterator[ServerProcess]:
    with _tls_server(demo_repo, pki, mutual=False) as proc:
        yield proc


@pytest.fixture(scope="module")
def mtls_server(demo_repo: Path, pki: Pki) -> Iterator[ServerProcess]:
    with _tls_server(demo_repo, pki, mutual=True) as proc:
        yield proc


def _infer_doc() -> dict[str, object]:
    return {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}


def _grpc_infer(port: int, credentials: grpc.ChannelCredentials) -> pb.ModelInferResponse:
    x = np.zeros((1, 64), np.float32)
    request = pb.ModelInferRequest(model_name="digits_mlp", raw_input_contents=[x.tobytes()])
    request.inputs.add(name="pixels", datatype="FP32", shape=[1, 64])
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        response: pb.ModelInferResponse = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
        return response


def test_rest_round_trip_over_tls(tls_server: ServerProcess, pki: Pki) -> None:
    with httpx.Client(verify=pki.client_context(with_cert=False), timeout=60) as client:
        r = client.post(f"https://127.0.0.1:{tls_server.http}/v2/models/digits_mlp/infer", json=_infer_doc())
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 10]


def test_plain_http_is_not_served_on_a_tls_port(tls_server: ServerProcess) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{tls_server.http}/v2/health/live", timeout=60)


def test_grpc_round_trip_over_tls(tls_server: ServerProcess, pki: Pki) -> None:
    response = _grpc_infer(tls_server.grpc, pki.grpc_credentials(with_cert=False))
    assert list(response.outputs[0].shape) == [1, 10]


def test_mutual_tls_round_trips_with_a_client_certificate(mtls_server: ServerProcess, pki: Pki) -> None:
    with httpx.Client(verify=pki.client_context(with_cert=True), timeout=60) as client:
        r = client.post(f"https://127.0.0.1:{mtls_server.http}/v2/models/digits_mlp/infer", json=_infer_doc())
    assert r.status_code == 200
    response = _grpc_infer(mtls_server.grpc, pki.grpc_credentials(with_cert=True))
    assert list(response.outputs[0].shape) == [1, 10]


def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_server: ServerProcess, pki: Pki) -> None:
    with pytest.raises(httpx.TransportError), httpx.Client(verify=pki.client_context(with_cert=False)) as client:
        client.get(f"https://127.0.0.1:{mtls_server.http}/v2/health/live", timeout=60)
    with pytest.raises(grpc.RpcError) as raised:
        _grpc_infer(mtls_server.grpc, pki.grpc_credentials(with_cert=False))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_certificate_from_another_ca(mtls_server: ServerProcess, pki: Pki, tmp_path: Path) -> None:
    stranger = trustme.CA().issue_cert("client@elsewhere.test")
    cert, key = tmp_path / "c.pem", tmp_path / "c.key"
    stranger.cert_chain_pems[0].write_to_path(str(cert))
    stranger.private_key_pem.write_to_path(str(key))
    context = pki.client_context(with_cert=False)
    context.load_cert_chain(cert, key)
    with pytest.raises(httpx.TransportError), httpx.Client(verify=context) as client:
        client.get(f"https://127.0.0.1:{mtls_server.http}/v2/health/live", timeout=60)


def test_unusable_certificate_files_exit_2_with_one_line(demo_repo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    proc = ServerProcess(demo_repo, "--tls-cert", str(bad), "--tls-key", str(bad))
    code, stderr = proc.run_to_exit()
    assert code == 2
    assert stderr.strip().splitlines() == [
        f"modelgate: error: tls_cert {bad} / tls_key {bad}: not a PEM certificate chain and its private key"
    ]


def test_cert_without_key_exits_2(demo_repo: Path, pki: Pki) -> None:
    code, stderr = ServerProcess(demo_repo, "--tls-cert", str(pki.server_cert)).run_to_exit()
    assert code == 2 and "tls_cert and tls_key must be given together" in stderr
    assert "Traceback" not in stderr
