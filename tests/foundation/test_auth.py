"""Bearer JWT: every refusal is a 401 with a JSON error; each role is accepted."""

from __future__ import annotations

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
