"""Errors worth retrying later, and the one translation of client-library errors into them.

Every retryable error derives from :class:`Transient`: a dependency that is down or busy
(PostgreSQL, Redis, the realtime broker, clamd, an AWS endpoint) or work another worker
holds right now (a step in progress). A retry decision asks ``isinstance(exc, Transient)``
and nothing else; the edge that catches a client library's own exception (asyncpg, redis,
botocore, a socket) passes it through :func:`as_transient` first.
"""

from __future__ import annotations

import asyncpg
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class Transient(Exception):
    """Worth trying again later: the same work may well succeed once the cause passes."""


class DatabaseUnavailable(Transient):
    """PostgreSQL cannot be reached (or is restarting); HTTP handlers turn this into 503."""


class RedisUnavailable(Transient):
    """Redis cannot be reached or timed out."""


class AwsUnavailable(Transient):
    """An AWS endpoint (S3, SQS, SNS, …) is unreachable or timed out."""


class NetworkUnavailable(Transient):
    """A socket-level failure talking to some service (refused, reset, timed out)."""


# PostgreSQL errors that say "not now" rather than "never": the connection is gone or
# refused, the server is shutting down or starting, or too busy; a serialization failure or
# a deadlock of the transaction.
_POSTGRES_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin/crash shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, out of memory
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.InterfaceError,  # connection closed under a query, pool closing
)
_AWS_TRANSIENT: tuple[type[BaseException], ...] = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)
_REDIS_TRANSIENT: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError)
# AWS answers that mean "not now": throttling, and the service's own failures (5xx).
_AWS_RETRY_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def _aws_says_later(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return error.get("Code") in _AWS_RETRY_CODES or (isinstance(status, int) and status >= 500)


def as_transient(exc: BaseException) -> BaseException:
    """The :class:`Transient` a client library's connection error stands for (chained to
    it), or ``exc`` itself when it is something else (including an existing Transient)."""
    if isinstance(exc, Transient):
        return exc
    translated: Transient | None = None
    if isinstance(exc, _POSTGRES_TRANSIENT):
        translated = DatabaseUnavailable(f"{type(exc).__name__}: {exc}")
    elif isinstance(exc, _AWS_TRANSIENT) or (isinstance(exc, ClientError) and _aws_says_later(exc)):
        translated = AwsUnavailable(f"{type(exc).__name__}: {exc}")
    elif isinstance(exc, _REDIS_TRANSIENT):
        translated = RedisUnavailable(f"{type(exc).__name__}: {exc}")
    elif isinstance(exc, OSError):  # refused, reset, unreachable; TimeoutError is one too
        translated = NetworkUnavailable(f"{type(exc).__name__}: {exc}")
    if translated is None:
        return exc
    translated.__cause__ = exc
    return translated


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the one question every retry asks (after :func:`as_transient`)."""
    return isinstance(as_transient(exc), Transient)
