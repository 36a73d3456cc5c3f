"""The guarded client against a real HTTP server on loopback: refused addresses are never
connected to (the server sees nothing), the connection goes to the address that was checked
while TLS checks the name, redirects are not followed (and a followed one is checked again),
and no proxy is used."""

from __future__ import annotations

import ipaddress
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from service.outbound.addresses import AddressPolicy, IPAddress
from service.outbound.guard import DestinationGuard, UnsafeDestinationError
from service.outbound.transport import GuardedTransport, guarded_client
from tests.support.receiver import Receiver, Reply

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def client(
    policy: AddressPolicy, resolver: dict[str, list[str]] | None = None
) -> httpx.AsyncClient:
    if resolver is None:
        return guarded_client(DestinationGuard(policy), timeout=5)
    table = resolver

    async def resolve(host: str, port: int) -> list[IPAddress]:
        del port
        return [ipaddress.ip_address(address) for address in table[host]]

    return guarded_client(DestinationGuard(policy, resolve), timeout=5)


async def test_loopback_is_reached_only_with_the_setting(receiver: Receiver) -> None:
    url = receiver.url("/allowed")
    async with client(AddressPolicy(allow_loopback=True)) as allowed:
        response = await allowed.post(url, content=b"hi")
    assert response.status_code == 200
    assert [r.body for r in receiver.received("/allowed")] == [b"hi"]

    async with client(AddressPolicy()) as default:
        with pytest.raises(UnsafeDestinationError, match=r"127\.0\.0\.1 is a loopback address"):
            await default.post(receiver.url("/refused"), content=b"hi")
    assert receiver.received("/refused") == []


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "[::ffff:127.0.0.1]", "0x7f000001", "2130706433", "127.1", "localhost", "0"],
)
async def test_every_spelling_of_the_local_host_is_refused(receiver: Receiver, host: str) -> None:
    path = f"/spelling-{host.strip('[]').replace(':', '-')}"
    async with client(AddressPolicy()) as default:
        with pytest.raises(UnsafeDestinationError):
            await default.get(f"http://{host}:{receiver.port}{path}")
    assert receiver.received(path) == []


async def test_the_unspecified_address_is_refused_even_with_loopback_allowed(
    receiver: Receiver,
) -> None:
    async with client(AddressPolicy(allow_loopback=True)) as loopback_ok:
        with pytest.raises(UnsafeDestinationError, match="unspecified"):
            await loopback_ok.get(f"http://0:{receiver.port}/zero")
    assert receiver.received("/zero") == []


async def test_cloud_metadata_is_refused_before_any_connection() -> None:
    started = time.monotonic()
    async with client(AddressPolicy(allow_loopback=True, allow_private=True)) as permissive:
        with pytest.raises(UnsafeDestinationError, match="link-local"):
            await permissive.get("http://169.254.169.254/latest/meta-data/")
    assert time.monotonic() - started < 1.0  # refused, not timed out


async def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    async with client(AddressPolicy(), {"intranet.example": ["10.20.30.40"]}) as default:
        with pytest.raises(UnsafeDestinationError, match=r"10\.20\.30\.40 is a private address"):
            await default.get("http://intranet.example/")


async def test_the_connection_goes_to_the_address_that_was_checked(receiver: Receiver) -> None:
    # `pinned.test` exists only in the guard's resolver: the request can reach the receiver only
    # if the socket is opened to the address the guard checked, never to a fresh lookup.
    resolver = {"pinned.test": ["127.0.0.1"]}
    async with client(AddressPolicy(allow_loopback=True), resolver) as pinned:
        response = await pinned.get(f"http://pinned.test:{receiver.port}/pinned")
    assert response.status_code == 200
    (request,) = receiver.received("/pinned")
    assert request.headers["host"] == f"pinned.test:{receiver.port}"


async def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.script(
        "/moved",
        Reply(302, {"location": receiver.url("/target")}),
        Reply(302, {"location": "http://169.254.169.254/latest/meta-data/"}),
    )
    async with client(AddressPolicy(allow_loopback=True)) as loopback_ok:
        first = await loopback_ok.get(receiver.url("/moved"))
        second = await loopback_ok.get(receiver.url("/moved"))
    assert (first.status_code, second.status_code) == (302, 302)
    assert receiver.received("/target") == []


async def test_a_redirect_to_a_refused_address_is_refused_even_when_followed(
    receiver: Receiver,
) -> None:
    receiver.script(
        "/to-metadata", Reply(302, {"location": "http://169.254.169.254/latest/meta-data/"})
    )
    receiver.script("/to-intranet", Reply(307, {"location": "http://intranet.example/admin"}))
    resolver = {"127.0.0.1": ["127.0.0.1"], "intranet.example": ["192.168.0.10"]}
    async with client(AddressPolicy(allow_loopback=True), resolver) as loopback_ok:
        with pytest.raises(UnsafeDestinationError, match=r"169\.254\.169\.254"):
            await loopback_ok.get(receiver.url("/to-metadata"), follow_redirects=True)
        with pytest.raises(UnsafeDestinationError, match=r"192\.168\.0\.10"):
            await loopback_ok.get(receiver.url("/to-intranet"), follow_redirects=True)


async def test_no_proxy_is_taken_from_the_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: nothing answers
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with client(AddressPolicy(allow_loopback=True)) as loopback_ok:
        response = await loopback_ok.get(receiver.url("/direct"))
    assert response.status_code == 200
    assert len(receiver.received("/direct")) == 1


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, ssl.SSLContext]]:
    """An HTTPS server on loopback with a certificate for `pinned.test` only, and a client
    context that trusts that certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pinned.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("pinned.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_path, key_path)
    with Receiver() as receiver:
        receiver.wrap_socket(server_context)
        yield receiver.port, ssl.create_default_context(cafile=str(cert_path))


async def test_tls_is_checked_against_the_name_while_the_socket_goes_to_the_checked_address(
    tls_server: tuple[int, ssl.SSLContext],
) -> None:
    port, trusting = tls_server

    async def resolve(host: str, port: int) -> list[IPAddress]:
        del host, port
        return [ipaddress.ip_address("127.0.0.1")]

    guard = DestinationGuard(AddressPolicy(allow_loopback=True), resolve)
    transport = GuardedTransport(guard, ssl_context=trusting)
    async with httpx.AsyncClient(transport=transport, timeout=5) as pinned:
        response = await pinned.get(f"https://pinned.test:{port}/secure")
        assert response.status_code == 200
        # The same address under a name the certificate does not carry: refused by TLS.
        with pytest.raises(httpx.ConnectError, match="certificate"):
            await pinned.get(f"https://impostor.test:{port}/secure")
