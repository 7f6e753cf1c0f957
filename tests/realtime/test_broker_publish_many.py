"""``Broker.publish_many``: one publication to an event's channels (one script call on a single
Redis, one per slot on a Cluster) keeps the per-channel contract of ``publish`` — offsets,
epochs, history, live delivery in offset order — on ``memory://``, ``redis://`` and a real
Redis Cluster (the fixture of the contract suite)."""

from __future__ import annotations

from server.realtime.broker import Broker, StreamPosition
from tests.realtime.test_broker_contract import Feed, broker, channel

__all__ = ["broker"]  # the fixture, parametrised over the three backends


async def test_each_channel_gets_its_own_offset_and_history(broker: tuple[Broker, Feed]) -> None:
    b, _ = broker
    channels = [channel() for _ in range(4)]
    await b.publish(channels[1], b'{"before":1}')  # one channel already has a stream
    first = await b.publish_many(channels, b'{"n":1}', key="upload-a")
    second = await b.publish_many(channels, b'{"n":2}')
    assert [p.offset for p in first] == [1, 2, 1, 1]
    assert [p.offset for p in second] == [2, 3, 2, 2]
    for ch, a, z in zip(channels, first, second, strict=True):
        pubs, head = await b.history(ch, since=None, limit=-1)
        assert head == StreamPosition(z.offset, a.epoch) and a.epoch == z.epoch
        assert [p.data for p in pubs][-2:] == [b'{"n":1}', b'{"n":2}']
        assert [p.key for p in pubs][-2:] == ["upload-a", None]


async def test_subscribed_channels_receive_live_in_offset_order(broker: tuple[Broker, Feed]) -> None:
    b, feed = broker
    wanted = [channel() for _ in range(3)]
    other = channel()
    for ch in wanted:
        await b.subscribe(ch)
    for i in range(5):
        await b.publish_many([*wanted, other], b'{"n":%d}' % i)
    await feed.wait(lambda: len(feed.publications) >= 15, "fifteen publications")
    assert {ch for ch, _ in feed.publications} == set(wanted)
    for ch in wanted:
        assert [pub.offset for c, pub in feed.publications if c == ch] == [1, 2, 3, 4, 5]
        assert [pub.data for c, pub in feed.publications if c == ch] == [b'{"n":%d}' % i for i in range(5)]
