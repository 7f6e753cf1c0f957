"""A real Redis Cluster on loopback: six ``redis-server`` processes (three masters, three
replicas) from Debian's redis-server 7.0, joined with ``redis-cli --cluster create
--cluster-replicas 1``. Used by the test suite and by ``bench/soak.py``.

``with RedisCluster(tmp_dir) as cluster: cluster.url`` → ``redis://127.0.0.1:<port>/0`` of
one node (the app's ``BUILDPEER_REDIS_URL`` with ``BUILDPEER_REDIS_CLUSTER=true``).
``failover(port)`` promotes the replica of the master on ``port`` (``CLUSTER FAILOVER``) and
waits until every node agrees.

``python -m devstack.redis_cluster [DIR]`` (default ``var/redis-cluster``) starts one, prints
the ``BUILDPEER_REDIS_URL`` / ``BUILDPEER_REDIS_CLUSTER`` to run ``buildpeer dev`` on it, and
stops it on Ctrl-C or SIGTERM."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path
from types import TracebackType

import redis

from devstack.process import ManagedProcess, free_port, wait_until
from devstack.redis import redis_server_binary

NODES = 6
SLOTS = 16384


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def redis_cli_binary() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        raise RuntimeError("redis-cli not found (Debian's redis-tools: scripts/system-packages.sh)")
    return found


class RedisCluster:
    def __init__(self, data_dir: Path, *, nodes: int = NODES) -> None:
        self.data_dir = data_dir.resolve()
        self.ports: list[int] = []
        self.nodes = nodes
        self.processes: dict[int, ManagedProcess] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=2)

    def start(self, timeout: float = 60.0) -> None:
        while len(self.ports) < self.nodes:
            port = free_port()
            # a node also listens on port + 10000 (the cluster bus): that one must be free too
            if port not in self.ports and port <= 55535 and _bindable(port + 10000):
                self.ports.append(port)
        for port in self.ports:
            self._start_node(port)
        for port in self.ports:
            wait_until(lambda p=port: self._ping(p), timeout, f"Redis Cluster node {port}")  # type: ignore[misc]
        subprocess.run(
            [
                redis_cli_binary(),
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in self.ports],
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        wait_until(self._healthy, timeout, "Redis Cluster state ok")

    def _start_node(self, port: int) -> None:
        node_dir = self.data_dir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(node_dir),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            "--appendonly",
            "no",
            "--save",
            "",
            "--daemonize",
            "no",
            "--maxclients",
            "10000",
        ]
        process = ManagedProcess(
            f"redis-cluster-{port}", argv, log_path=node_dir / "redis.log", stop_signal=signal.SIGTERM
        )
        process.start()
        self.processes[port] = process

    def _ping(self, port: int) -> bool:
        self.processes[port].check_alive()
        try:
            return bool(self._client(port).ping())
        except redis.RedisError:
            return False

    def _info(self, port: int) -> dict[str, str]:
        info: dict[str, str] = self._client(port).execute_command("CLUSTER INFO")  # parsed by redis-py
        return info

    def _healthy(self) -> bool:
        try:
            infos = [self._info(p) for p in self.ports]
            ok = [i.get("cluster_state") == "ok" and i.get("cluster_slots_ok") == str(SLOTS) for i in infos]
            if not all(ok):
                return False
            return len(self.masters()) == self.nodes // 2 and self._views_agree()
        except redis.RedisError:
            return False

    def _views_agree(self) -> bool:
        views = {tuple(sorted(self._roles(p).items())) for p in self.ports}
        return len(views) == 1

    def _roles(self, port: int) -> dict[int, str]:
        """Every node's role as ``port`` sees it (``CLUSTER NODES``, parsed by redis-py)."""
        nodes: dict[str, dict[str, object]] = self._client(port).execute_command("CLUSTER NODES")
        roles: dict[int, str] = {}
        for address, node in nodes.items():
            node_port = int(address.split("@", 1)[0].rsplit(":", 1)[1] or port)
            flags = str(node["flags"])
            roles[node_port] = "master" if "master" in flags and "fail" not in flags else "replica"
        return roles

    def masters(self) -> list[int]:
        return sorted(p for p, role in self._roles(self.ports[0]).items() if role == "master")

    def replica_of(self, master_port: int) -> int:
        master_id = self._client(master_port).execute_command("CLUSTER MYID")
        master_id = master_id.decode() if isinstance(master_id, bytes) else str(master_id)
        for port in self.ports:
            if port == master_port:
                continue
            info = self._client(port).info("replication")
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == master_port:
                return port
        raise RuntimeError(f"no replica of {master_port} ({master_id})")

    def master_of_key(self, key: str) -> int:
        slot = int(self._client(self.ports[0]).execute_command("CLUSTER KEYSLOT", key))
        for entry in self._client(self.ports[0]).execute_command("CLUSTER SLOTS"):
            low, high, master = int(entry[0]), int(entry[1]), entry[2]
            if low <= slot <= high:
                return int(master[1])
        raise RuntimeError(f"no master serves slot {slot}")

    def failover(self, master_port: int, timeout: float = 30.0) -> int:
        """``CLUSTER FAILOVER`` on the replica of ``master_port``; its port, once every node
        sees it as the master and the cluster is ok again."""
        replica = self.replica_of(master_port)
        self._client(replica).execute_command("CLUSTER FAILOVER")
        wait_until(
            lambda: self._healthy() and replica in self.masters() and master_port not in self.masters(),
            timeout,
            f"failover of {master_port} to {replica}",
        )
        return replica

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop(timeout=5)
        self.processes.clear()

    def __enter__(self) -> RedisCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    import sys
    import threading

    args = sys.argv[1:] if argv is None else argv
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with RedisCluster(Path(args[0] if args else "var/redis-cluster")) as cluster:
        print(f"Redis Cluster: {len(cluster.masters())} masters + replicas on ports {cluster.ports}")
        print(f"BUILDPEER_REDIS_URL={cluster.url} BUILDPEER_REDIS_CLUSTER=true make run", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
