"""``/openapi.json`` documents every route, and schemathesis driving it finds no 5xx."""

from __future__ import annotations

from typing import Any

import httpx
import hypothesis
import schemathesis
from hypothesis import HealthCheck

from server.openapi import undocumented_routes
from tests.conftest import TenantFixture


async def test_schema_covers_every_route(client: httpx.AsyncClient, app: Any) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    schema = r.json()
    assert schema["openapi"].startswith("3.")
    assert undocumented_routes(app.routes) == []
    paths = schema["paths"]
    for path, methods in {
        "/health": ["get"],
        "/openapi.json": ["get"],
        "/s3/params": ["get"],
        "/s3/multipart": ["post"],
        "/s3/multipart/{uploadId}": ["delete", "get"],
        "/s3/multipart/{uploadId}/{partNumber}": ["get"],
        "/s3/multipart/{uploadId}/batch": ["get"],
        "/s3/multipart/{uploadId}/complete": ["post"],
        "/api/v1/uploads/{upload_id}": ["delete", "get"],
        "/api/v1/uploads/{upload_id}/original": ["get"],
        "/api/v1/uploads/{upload_id}/progress": ["post"],
        "/api/v1/projects/{project_id}/uploads": ["get"],
    }.items():
        assert sorted(paths[path]) == methods, path
    refs = {"Error", "UploadDocument", "CreateMultipart", "CompleteMultipart", "Progress", "Part"}
    assert refs <= set(schema["components"]["schemas"])


def test_schemathesis_finds_no_server_errors(live_server: Any, tenant: TenantFixture) -> None:
    server = live_server()
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = tenant.auth("admin")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1  # every documented route, whichever area owns it

        @hypothesis.settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @hypothesis.given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=server.url, headers=headers)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}"
                )

        check()
    assert operations >= 20
    assert failures == []
