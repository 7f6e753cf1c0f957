"""A local round-robin TCP balancer in its own process (the bench's clients must not share
its work on their event loop): each new connection goes to the next target, or past it to the
first that accepts (an instance that died is skipped). The fault tests' ``TcpProxy``, run
until SIGTERM or SIGINT.

Usage: ``.venv/bin/python bench/balancer.py PORT TARGET_PORT [TARGET_PORT ...]`` (all on
127.0.0.1); prints ``ready`` once it listens.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.resilience.proxy import TcpProxy  # noqa: E402


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    port, *targets = (int(a) for a in sys.argv[1:])
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    proxy = TcpProxy(*[("127.0.0.1", t) for t in targets], port=port, round_robin=True).start()
    print("ready", flush=True)
    try:
        stop.wait()
    finally:
        proxy.close()
    print(f"accepted {proxy.accepted}", flush=True)


if __name__ == "__main__":
    main()
