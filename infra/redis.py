"""A local Redis server from Debian's `redis-server` package, bound to 127.0.0.1, persisting nothing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from concord.infra.process import InfraError, port_open, read_pid, spawn, stop_pid, wait_until

E_NO_REDIS = (
    "redis-server was not found on PATH and cannot be installed here ({why}). "
    "Install Debian's package as root (apt-get install redis-server), or point CONCORD_REDIS_URL at a "
    "running Redis 6.2+, or use docker-compose.yml."
)


@dataclass(frozen=True)
class RedisNode:
    cache: Path
    port: int = 6379
    persist: bool = False

    @property
    def home(self) -> Path:
        return self.cache / str(self.port)

    @property
    def log_file(self) -> Path:
        return self.home / "redis.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "redis.pid"


def ensure_installed() -> str:
    """Path of `redis-server`, installing Debian's package when missing and running as root."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found:
        return found
    if os.geteuid() != 0:
        raise InfraError(E_NO_REDIS.format(why="not running as root"))
    if shutil.which("apt-get") is None:
        raise InfraError(E_NO_REDIS.format(why="apt-get is not available"))
    print("infra: installing Debian's redis-server package (once) ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise InfraError(E_NO_REDIS.format(why=f"{' '.join(cmd)} failed: {result.stderr.strip()[-500:]}"))
    # The package may start its own service on 6379; ours is started (or reused) explicitly below.
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(found).exists():
        raise InfraError(E_NO_REDIS.format(why="the package installed no redis-server binary"))
    return found


def running(node: RedisNode) -> bool:
    return port_open("127.0.0.1", node.port)


def start(node: RedisNode, timeout: float = 20.0) -> bool:
    """Start Redis unless one already answers on the port. True when this call started it."""
    if running(node):
        return False
    binary = ensure_installed()
    node.home.mkdir(parents=True, exist_ok=True)
    argv = [
        binary, "--bind", "127.0.0.1", "--port", str(node.port), "--daemonize", "no",
        "--dir", str(node.home), "--logfile", "", "--protected-mode", "yes",
    ]
    if node.persist:
        argv += ["--appendonly", "yes"]
    else:
        argv += ["--save", "", "--appendonly", "no"]
    print(f"infra: starting Redis on 127.0.0.1:{node.port} (log: {node.log_file})", flush=True)
    spawn(argv, node.log_file, node.pid_file)
    wait_until(
        lambda: _pong(node), timeout, f"Redis on 127.0.0.1:{node.port}", node.log_file,
        alive=lambda: read_pid(node.pid_file) is not None,
    )
    return True


def _pong(node: RedisNode) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", node.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def stop(node: RedisNode) -> bool:
    """Stop the Redis this folder started. False if none of ours was running."""
    return stop_pid(node.pid_file, grace=10.0)
