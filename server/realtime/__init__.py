"""Real-time: Centrifugo client protocol v2 (JSON) over WebSockets, a broker (Redis or
memory) with history and recovery, and the SNS→SQS event consumer that feeds it
(DESIGN §3). Centrifuge's split: ``hub`` indexes and fans out, ``node`` owns broker,
presence, recovery and authorisation, ``session`` speaks the protocol to one client
through a ``transport``, ``writer`` bounds what waits to be sent."""

from server.realtime.component import RealtimeComponent, build_node, routes
from server.realtime.config import RealtimeConfig
from server.realtime.consumer import EventConsumer
from server.realtime.hub import Hub
from server.realtime.node import Node

__all__ = ["EventConsumer", "Hub", "Node", "RealtimeComponent", "RealtimeConfig", "build_node", "routes"]
