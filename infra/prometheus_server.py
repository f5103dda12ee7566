"""A local Prometheus from Debian's `prometheus` package (which brings `promtool`), bound to 127.0.0.1.

For the tests that check Concord's alert rules (`promtool check rules`, `promtool test rules`) and scrape a
real worker, and for anyone who wants one beside a local worker without Docker. Installed the way Redis
is (infra/redis.py): found on PATH, else Debian's package when running as root with apt-get, else an
error that says what to install. Each node lives in a folder of its own: its configuration, its data
(`data/`), `prometheus.log` and `prometheus.pid`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from concord.infra.process import InfraError, read_pid, spawn, stop_pid, wait_until

E_NO_PROMETHEUS = (
    "{missing} not found on PATH and cannot be installed here ({why}). Install Debian's package as root "
    "(apt-get install prometheus: it brings promtool), or put the `prometheus` and `promtool` binaries of an "
    "official release (https://prometheus.io/download/) on PATH, or use docker-compose.yml."
)


@dataclass(frozen=True)
class Tools:
    """Where the two binaries are."""

    prometheus: str
    promtool: str


def _find() -> dict[str, str | None]:
    return {name: shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
            for name in ("prometheus", "promtool")}


def ensure_installed() -> Tools:
    """`prometheus` and `promtool`, installing Debian's package when one is missing and running as root."""
    found = _find()
    missing = [name for name, path in found.items() if path is None]
    if missing:
        what = " and ".join(missing) + (" were" if len(missing) > 1 else " was")
        if os.geteuid() != 0:
            raise InfraError(E_NO_PROMETHEUS.format(missing=what, why="not running as root"))
        if shutil.which("apt-get") is None:
            raise InfraError(E_NO_PROMETHEUS.format(missing=what, why="apt-get is not available"))
        print("infra: installing Debian's prometheus package (once) ...", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        # Without its recommends (node exporter and others): only the server and promtool are needed.
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"]):
            result = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if result.returncode != 0:
                raise InfraError(E_NO_PROMETHEUS.format(
                    missing=what, why=f"{' '.join(cmd)} failed: {result.stderr.strip()[-500:]}"))
        # On a machine with an init system the package starts its own service on :9090; ours are started
        # explicitly below, on ports of their own.
        found = _find()
        missing = [name for name, path in found.items() if path is None]
        if missing:
            raise InfraError(E_NO_PROMETHEUS.format(missing=" and ".join(missing),
                                                    why="the package installed no such binary"))
    return Tools(prometheus=str(found["prometheus"]), promtool=str(found["promtool"]))


@dataclass(frozen=True)
class PrometheusNode:
    """One Prometheus server: its folder and its port on 127.0.0.1."""

    home: Path
    port: int

    @property
    def config(self) -> Path:
        return self.home / "prometheus.yml"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "prometheus.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "prometheus.pid"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _ready(node: PrometheusNode) -> bool:
    try:
        with urllib.request.urlopen(f"{node.url}/-/ready", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start(node: PrometheusNode, config: str, files: Mapping[str, str] | None = None, timeout: float = 30.0) -> None:
    """Write `config` (prometheus.yml) and `files` (name -> text: rule files it names) into the node's folder,
    start Prometheus on it and wait until it is ready."""
    tools = ensure_installed()
    node.home.mkdir(parents=True, exist_ok=True)
    node.config.write_text(config)
    for name, text in (files or {}).items():
        (node.home / name).write_text(text)
    argv = [tools.prometheus, f"--config.file={node.config}", f"--storage.tsdb.path={node.data}",
            f"--web.listen-address=127.0.0.1:{node.port}", "--log.level=warn"]
    print(f"infra: starting Prometheus on {node.url} (log: {node.log_file})", flush=True)
    spawn(argv, node.log_file, node.pid_file)
    wait_until(lambda: _ready(node), timeout, f"Prometheus on {node.url}", node.log_file,
               alive=lambda: read_pid(node.pid_file) is not None)


def stop(node: PrometheusNode) -> bool:
    """Stop the Prometheus this folder started. False if none of ours was running."""
    return stop_pid(node.pid_file, grace=10.0)
