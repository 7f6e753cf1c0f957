"""Notification fixtures: the FCM v1 fake (the dev emulator, shared code), an aiosmtpd
sink on a free port, and notifier/client factories pointed at them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from core.settings import Settings
from devstack.fcm_emulator import FcmEmulator
from devstack.smtp_sink import SmtpSink
from subscribers.push.fcm import FcmClient


@pytest.fixture(scope="session")
def fcm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FcmEmulator]:
    emulator = FcmEmulator(tmp_path_factory.mktemp("push"), project_id="bp-test").start()
    yield emulator
    emulator.stop()


@pytest.fixture
def fcm(fcm_server: FcmEmulator) -> FcmEmulator:
    fcm_server.reset()
    return fcm_server


@pytest.fixture
def push_settings(settings: Settings, fcm_server: FcmEmulator) -> Settings:
    return settings.replace(
        fcm_credentials=str(fcm_server.credentials_path),
        fcm_endpoint=fcm_server.url,
        push_wait_seconds=1,
    )


class RecordingSleep:
    """Records the waits the client asks for, then yields without waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def fcm_client(push_settings: Settings) -> AsyncIterator[Any]:
    made: list[FcmClient] = []

    async def make(**kwargs: Any) -> FcmClient:
        assert push_settings.fcm_credentials
        client = FcmClient(
            push_settings.fcm_credentials,
            endpoint=push_settings.fcm_endpoint,
            max_attempts=kwargs.pop("max_attempts", push_settings.push_max_attempts),
            **kwargs,
        )
        await client.start()
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


@pytest.fixture
def smtp_sink(tmp_path: Any) -> Iterator[SmtpSink]:
    sink = SmtpSink(tmp_path / "mail").start()
    yield sink
    sink.stop()


@pytest.fixture
async def s3_client(settings: Settings) -> AsyncIterator[Any]:
    import aioboto3

    from server.app import aws_client_kwargs

    async with aioboto3.Session().client("s3", **aws_client_kwargs(settings)) as s3:
        yield s3
