"""Helpers for the uploads tests: a sync S3 client on the session's moto, and small
drivers of the Companion routes that PUT bytes to the presigned URLs over real HTTP."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from core.settings import Settings
from devstack.aws import client as aws_client

MIB = 1024 * 1024


@pytest.fixture
def s3(settings: Settings) -> Any:
    return aws_client(settings, "s3")


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def key_of_url(url: str, bucket: str) -> str:
    """The object key a path-style presigned URL names."""
    path = unquote(urlsplit(url).path)
    prefix = f"/{bucket}/"
    assert path.startswith(prefix), url
    return path[len(prefix) :]


@dataclass
class Multipart:
    key: str
    upload_id: str
    id: str
    part_size: int | None


async def create_multipart(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    project_id: uuid.UUID | str,
    *,
    filename: str = "plano.pdf",
    mime: str = "application/pdf",
    size: int | None = None,
) -> Multipart:
    body: dict[str, Any] = {
        "filename": filename,
        "type": mime,
        "metadata": {"projectId": str(project_id), "name": filename, "type": mime},
    }
    if size is not None:
        body["size"] = size
    r = await client.post("/s3/multipart", json=body, headers=headers)
    assert r.status_code == 200, r.text
    data = r.json()
    return Multipart(data["key"], data["uploadId"], data["id"], data.get("partSize"))


async def sign_part(client: httpx.AsyncClient, headers: dict[str, str], mp: Multipart, n: int) -> str:
    r = await client.get(f"/s3/multipart/{mp.upload_id}/{n}", params={"key": mp.key}, headers=headers)
    assert r.status_code == 200, r.text
    url: str = r.json()["url"]
    return url


async def put_bytes(url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    """A plain HTTP PUT to a presigned URL (what a browser or phone does)."""
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.put(url, content=body, headers=headers)


async def post_form(
    signed: dict[str, Any], body: bytes, *, headers: dict[str, str] | None = None, **overrides: str
) -> httpx.Response:
    """A browser form upload to an S3 POST policy (``{url, fields}`` from /s3/params), the
    way stock Uppy sends it: every field, then the file; ``overrides`` replace fields."""
    fields = {**signed["fields"], **overrides}
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(signed["url"], data=fields, files={"file": ("blob", body)}, headers=headers)


def policy_conditions(signed: dict[str, Any]) -> list[Any]:
    """The conditions of a POST policy (its ``policy`` field is base64 JSON)."""
    import base64
    import json

    conditions: list[Any] = json.loads(base64.b64decode(signed["fields"]["policy"]))["conditions"]
    return conditions


async def put_part(url: str, chunk: bytes) -> str:
    r = await put_bytes(url, chunk)
    assert r.status_code == 200, r.text
    etag: str = r.headers["etag"]
    return etag


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]
