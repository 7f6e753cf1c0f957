"""The broker contract (``server.realtime.broker.Broker``), one suite run against both
implementations: ``memory://``, ``redis://`` (the stack's Redis) and ``redis://`` on a real
six-process Redis Cluster (sharded PUB/SUB)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.realtime.broker import Broker, Publication, StreamPosition, create_broker

HISTORY = 10


class Feed:
    """What a started broker hands to its instance."""

    def __init__(self) -> None:
        self.publications: list[tuple[str, Publication]] = []
        self.controls: list[bytes] = []
        self.arrived = asyncio.Event()

    def on_publication(self, channel: str, pub: Publication) -> None:
        self.publications.append((channel, pub))
        self.arrived.set()

    async def on_resubscribed(self) -> None:
        return None

    def on_control(self, data: bytes) -> None:
        self.controls.append(data)
        self.arrived.set()

    async def wait(self, predicate: Any, what: str) -> None:
        async def poll() -> None:
            while not predicate():
                self.arrived.clear()
                await self.arrived.wait()

        try:
            await asyncio.wait_for(poll(), 10)
        except TimeoutError:
            pytest.fail(f"broker never delivered {what}")


@pytest.fixture(params=["memory", "redis", "cluster"])
async def broker(request: Any, stack: Any) -> AsyncIterator[tuple[Broker, Feed]]:
    cluster = request.param == "cluster"
    if request.param == "memory":
        url = "memory://"
    elif cluster:
        url = request.getfixturevalue("redis_cluster").url
    else:
        url = stack.settings.redis_url
    instance = create_broker(url, history_size=HISTORY, history_ttl=60, presence_ttl=60, cluster=cluster)
    feed = Feed()
    await instance.start(feed.on_publication, feed.on_resubscribed, feed.on_control)
    yield instance, feed
    await instance.stop()


def channel() -> str:
    return f"{uuid.uuid4()}:project:{uuid.uuid4()}"


async def test_offsets_count_up_within_one_epoch(broker: tuple[Broker, Feed]) -> None:
    b, _ = broker
    ch = channel()
    positions = [await b.publish(ch, b'{"n":%d}' % i) for i in range(3)]
    assert [p.offset for p in positions] == [1, 2, 3]
    assert len({p.epoch for p in positions}) == 1 and positions[0].epoch


async def test_history_of_a_new_stream_makes_its_epoch(broker: tuple[Broker, Feed]) -> None:
    b, _ = broker
    ch = channel()
    pubs, head = await b.history(ch, since=None, limit=0)
    assert pubs == [] and head.offset == 0 and head.epoch
    first = await b.publish(ch, b"{}")
    assert first == StreamPosition(1, head.epoch)


async def test_history_since_limit_reverse_and_keys(broker: tuple[Broker, Feed]) -> None:
    b, _ = broker
    ch = channel()
    for i in range(5):
        await b.publish(ch, b'{"n":%d}' % i, key="upload-a" if i % 2 else None)
    pubs, head = await b.history(ch, since=None, limit=-1)
    assert [p.offset for p in pubs] == [1, 2, 3, 4, 5] and head.offset == 5
    assert [p.data for p in pubs] == [b'{"n":%d}' % i for i in range(5)]
    assert [p.key for p in pubs] == [None, "upload-a", None, "upload-a", None]
    assert all(p.epoch == head.epoch for p in pubs)
    since, _ = await b.history(ch, since=2, limit=2)
    assert [p.offset for p in since] == [3, 4]
    newest, _ = await b.history(ch, since=None, limit=2, reverse=True)
    assert [p.offset for p in newest] == [5, 4]
    none, same = await b.history(ch, since=5, limit=-1)
    assert none == [] and same == head


async def test_history_keeps_at_least_its_size_and_ends_at_the_head(broker: tuple[Broker, Feed]) -> None:
    b, _ = broker
    ch = channel()
    for i in range(HISTORY * 3):
        await b.publish(ch, b'{"n":%d}' % i)
    pubs, head = await b.history(ch, since=None, limit=-1)
    offsets = [p.offset for p in pubs]
    assert head.offset == HISTORY * 3
    assert len(offsets) >= HISTORY and offsets[-1] == head.offset  # Redis trims approximately
    assert offsets == list(range(offsets[0], head.offset + 1))  # contiguous: a gap is detectable


async def test_live_publications_only_for_subscribed_channels_in_order(broker: tuple[Broker, Feed]) -> None:
    b, feed = broker
    wanted, other = channel(), channel()
    await b.subscribe(wanted)
    for i in range(5):
        await b.publish(wanted, b'{"n":%d}' % i)
        await b.publish(other, b"{}")
    await feed.wait(lambda: len(feed.publications) >= 5, "five publications")
    assert {ch for ch, _ in feed.publications} == {wanted}
    assert [pub.offset for _, pub in feed.publications] == [1, 2, 3, 4, 5]
    await b.unsubscribe(wanted)
    await b.publish(wanted, b"{}")
    await b.subscribe(other)  # a marker: delivered after anything still in flight on `wanted`
    await b.publish(other, b'{"marker":1}')
    await feed.wait(lambda: feed.publications[-1][0] == other, "the marker")
    assert [ch for ch, _ in feed.publications].count(wanted) == 5


async def test_control_messages_reach_the_started_instance(broker: tuple[Broker, Feed]) -> None:
    b, feed = broker
    marker = uuid.uuid4().bytes
    await b.publish_control(marker)
    await feed.wait(lambda: marker in feed.controls, "the control message")


async def test_presence_counts_clients_and_users(broker: tuple[Broker, Feed]) -> None:
    b, _ = broker
    ch = channel()
    await b.add_presence(ch, "c1", "u1")
    await b.add_presence(ch, "c2", "u1")
    await b.add_presence(ch, "c3", "u2")
    stats = await b.presence_stats(ch)
    assert (stats.num_clients, stats.num_users) == (3, 2)
    await b.remove_presence(ch, "c1")
    await b.remove_presence(ch, "c3")
    stats = await b.presence_stats(ch)
    assert (stats.num_clients, stats.num_users) == (1, 1)
    other = await b.presence_stats(channel())
    assert (other.num_clients, other.num_users) == (0, 0)


async def test_a_server_on_the_memory_broker_serves_subscribers(rt_server: Any, make_tenant: Any) -> None:
    from server.realtime.channels import parse_channel
    from tests.realtime.wsclient import WsClient

    server = rt_server(realtime_broker_url="memory://")
    t = await make_tenant()
    name = f"project:{t.projects[0]}"
    client = await WsClient.open(server.ws_url)
    await client.connect(t.tokens["admin"])
    sub = (await client.call("subscribe", {"channel": name}))["subscribe"]
    for n in range(3):
        await server.run(server.node.publish_data(t.tenant_id, parse_channel(name), b'{"n":%d}' % n))
    pushes = await client.publications(3)
    assert [p["pub"]["offset"] for p in pushes] == [sub["offset"] + 1, sub["offset"] + 2, sub["offset"] + 3]
    again = await WsClient.open(server.ws_url)
    await again.connect(t.tokens["admin"])
    recovered = (
        await again.call("subscribe", {"channel": name, "recover": True, "offset": 1, "epoch": sub["epoch"]})
    )["subscribe"]
    assert recovered["recovered"] is True and [p["offset"] for p in recovered["publications"]] == [2, 3]
    await client.close()
    await again.close()
