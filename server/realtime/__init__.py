"""Real-time hub: Centrifugo client protocol v2 (JSON) over WebSockets, a Redis broker with
history and recovery, and the SNS→SQS event consumer that feeds it (DESIGN §3)."""

from server.realtime.component import RealtimeComponent, routes
from server.realtime.consumer import EventConsumer
from server.realtime.hub import Hub, HubConfig

__all__ = ["EventConsumer", "Hub", "HubConfig", "RealtimeComponent", "routes"]
