"""Bearer JWT: every refusal is a 401 with a JSON error; each role is accepted."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from core.settings import Settings
from server.app import create_app
from server.errors import EXCEPTION_HANDLERS
from server.permissions import authenticate
from tests.conftest import JWT_SECRET

AUD = "buildpeer"


def claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sub": str(uuid.uuid4()),
        "tid": str(uuid.uuid4()),
        "role": "field_worker",
        "aud": AUD,
        "exp": int(time.time()) + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def whoami_app(settings: Settings) -> Starlette:
    async def whoami(request: Request) -> JSONResponse:
        p = await authenticate(request)
        return JSONResponse({"sub": str(p.user_id), "tid": str(p.tenant_id), "role": p.role.value})

    app = Starlette(routes=[Route("/whoami", whoami)], exception_handlers=EXCEPTION_HANDLERS)
    app.state.settings = settings
    app.state.verifier = create_app(settings).state.verifier
    return app


async def call(app: Starlette, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return await c.get("/whoami", headers=headers)


def hs(payload: dict[str, object], secret: str = JWT_SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


def none_alg(payload: dict[str, object]) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{b64(json.dumps(payload).encode())}."


SETTINGS = Settings(jwt_secret=JWT_SECRET)


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, "missing_token"),
        ("not-a-jwt", "invalid_token"),
        (hs(claims(exp=int(time.time()) - 3600)), "token_expired"),
        (hs(claims(), secret="another-secret-0123456789-0123456789abcdef"), "invalid_token"),
        (none_alg(claims()), "invalid_token"),
        (hs(claims(aud="someone-else")), "invalid_token"),
        (hs(claims(tid=None)), "invalid_token"),
        (hs(claims(role=None)), "invalid_token"),
        (hs(claims(role="superuser")), "invalid_token"),
        (hs(claims(sub="not-a-uuid")), "invalid_token"),
        (hs(claims(exp=None)), "invalid_token"),
    ],
    ids=[
        "missing",
        "garbage",
        "expired",
        "bad-signature",
        "alg-none",
        "wrong-audience",
        "missing-tid",
        "missing-role",
        "unknown-role",
        "sub-not-uuid",
        "no-exp",
    ],
)
async def test_refused_tokens_get_401_json(token: str | None, code: str) -> None:
    response = await call(whoami_app(SETTINGS), token)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("role", ["admin", "field_worker", "investor"])
async def test_valid_token_for_each_role(role: str) -> None:
    c = claims(role=role)
    response = await call(whoami_app(SETTINGS), hs(c))
    assert response.status_code == 200
    assert response.json() == {"sub": c["sub"], "tid": c["tid"], "role": role}


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", key
    server.shutdown()
    server.server_close()


async def test_rs256_through_a_local_jwks(jwks_server: tuple[str, rsa.RSAPrivateKey]) -> None:
    url, key = jwks_server
    settings = Settings(jwt_jwks_url=url)
    app = whoami_app(settings)
    good = jwt.encode(claims(role="investor"), key, algorithm="RS256", headers={"kid": "k1"})
    assert (await call(app, good)).status_code == 200
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims(), other, algorithm="RS256", headers={"kid": "k1"})
    assert (await call(app, forged)).status_code == 401
    # An HS256 token is refused when only RS256 via JWKS is configured (no alg confusion).
    assert (await call(app, hs(claims()))).status_code == 401


def test_verified_tokens_are_cached_but_still_expire() -> None:
    from server import auth

    verifier = auth.TokenVerifier(Settings(jwt_secret=JWT_SECRET, jwt_leeway_seconds=0))
    token = hs(claims(exp=int(time.time()) + 2))
    first = verifier.verify(token)
    assert verifier.verify(token) is first  # served from the cache
    time.sleep(3)
    with pytest.raises(auth.AuthError) as info:
        verifier.verify(token)
    assert info.value.code == "token_expired"


# ---- JWKS: https only, iss, refresh on an unknown kid (rate-limited), expiry, off the loop ----


class Jwks:
    """A local identity provider's JWKS endpoint whose keys the test rotates."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {
            "k1": rsa.generate_private_key(public_exponent=65537, key_size=2048)
        }
        self.fetches = 0
        self.gate: threading.Event | None = None  # when set, a fetch waits for it
        self.entered = threading.Event()
        jwks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                jwks.entered.set()
                if jwks.gate is not None:
                    jwks.gate.wait(30)
                keys = []
                for kid, key in list(jwks.keys.items()):
                    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
                    jwk.update(kid=kid, use="sig", alg="RS256")
                    keys.append(jwk)
                body = json.dumps({"keys": keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def token(self, kid: str, **overrides: object) -> str:
        key = self.keys.get(kid) or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(claims(**overrides), key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    provider = Jwks()
    provider.thread.start()
    yield provider
    if provider.gate is not None:
        provider.gate.set()
    provider.server.shutdown()
    provider.server.server_close()


def test_jwks_only_over_https_except_to_loopback() -> None:
    from core.settings import SettingsError
    from server.jwks import JwksKeys

    for url in ("http://idp.example/.well-known/jwks.json", "http://10.0.0.5/jwks", "ftp://idp.example/j"):
        with pytest.raises(SettingsError) as info:
            Settings.from_env({"BUILDPEER_JWT_JWKS_URL": url})
        assert info.value.variable == "BUILDPEER_JWT_JWKS_URL"
        with pytest.raises(ValueError):
            JwksKeys(url, ttl_seconds=300, min_refresh_seconds=30)
    for url in ("https://idp.example/.well-known/jwks.json", "http://127.0.0.1:9/j", "http://localhost:9/j"):
        assert Settings.from_env({"BUILDPEER_JWT_JWKS_URL": url}).jwt_jwks_url == url


async def test_issuer_is_checked_when_configured(jwks: Jwks) -> None:
    issuer = "https://idp.buildpeer.example/"
    app = whoami_app(Settings(jwt_jwks_url=jwks.url, jwt_issuer=issuer))
    assert (await call(app, jwks.token("k1", iss=issuer))).status_code == 200
    wrong = await call(app, jwks.token("k1", iss="https://evil.example/"))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_token"
    assert (await call(app, jwks.token("k1"))).status_code == 401  # no iss at all
    # HS256 too; and without a configured issuer, iss is not required.
    hs_app = whoami_app(Settings(jwt_secret=JWT_SECRET, jwt_issuer=issuer))
    assert (await call(hs_app, hs(claims(iss=issuer)))).status_code == 200
    assert (await call(hs_app, hs(claims(iss="https://evil.example/")))).status_code == 401
    assert (await call(whoami_app(SETTINGS), hs(claims()))).status_code == 200


async def test_a_rotated_key_is_fetched_on_its_unknown_kid(jwks: Jwks) -> None:
    app = whoami_app(Settings(jwt_jwks_url=jwks.url, jwt_jwks_min_refresh_seconds=0))
    assert (await call(app, jwks.token("k1"))).status_code == 200
    assert jwks.fetches == 1
    jwks.keys["k2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # rotation
    assert (await call(app, jwks.token("k2"))).status_code == 200
    assert jwks.fetches == 2
    assert (await call(app, jwks.token("k1"))).status_code == 200  # cached: no fetch
    assert jwks.fetches == 2


def test_unknown_kids_are_rate_limited_and_keys_expire(jwks: Jwks) -> None:
    from server.jwks import JwksError, JwksKeys

    now = [1000.0]
    keys = JwksKeys(jwks.url, ttl_seconds=300, min_refresh_seconds=30, clock=lambda: now[0])
    first = keys.key("k1")
    assert jwks.fetches == 1
    for n in range(20):  # a flood of made-up kids: one fetch per 30 s at most
        with pytest.raises(JwksError):
            keys.key(f"made-up-{n}")
    assert jwks.fetches == 1
    now[0] += 31
    with pytest.raises(JwksError):
        keys.key("made-up-again")
    assert jwks.fetches == 2
    assert keys.key("k1").public_numbers() == first.public_numbers()
    assert jwks.fetches == 2
    # Revoked at the provider: after the cache TTL the key is no longer accepted.
    del jwks.keys["k1"]
    jwks.keys["k3"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert keys.key("k1").public_numbers() == first.public_numbers()  # within the TTL
    now[0] += 300
    with pytest.raises(JwksError) as info:
        keys.key("k1")
    assert info.value.reason == "unknown_kid"
    assert keys.key("k3") is not None


async def test_jwks_is_fetched_and_verified_off_the_event_loop(jwks: Jwks) -> None:
    app = whoami_app(Settings(jwt_jwks_url=jwks.url))
    jwks.gate = threading.Event()
    request = asyncio.create_task(call(app, jwks.token("k1", role="admin")))
    # The fetch is now parked in the provider. Were it on the event loop, the loop could not
    # deliver this wait's result and the test would hang until the gate's timeout.
    assert await asyncio.to_thread(jwks.entered.wait, 30)
    assert not request.done()
    jwks.gate.set()
    response = await request
    assert response.status_code == 200 and response.json()["role"] == "admin"
