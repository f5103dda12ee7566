"""`concord demo`: the main job on this machine — local Kafka and Redis, then a worker, until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from concord.app.settings import Settings
from concord.infra import cli as infra_cli


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Bring infra up (reusing what runs), run a worker in the foreground, stop what we started."""
    session = Path(args.cache) / "demo-session.json"
    infra_args = argparse.Namespace(**{**vars(args), "action": "up", "session": session})
    if infra_cli.run(infra_args) != 0:
        return 2
    url = f"http://{settings.web_host}:{settings.web_port}"
    worker = subprocess.Popen([sys.executable, "-m", "concord.app.cli", "worker", "-l", "info"],
                              env=os.environ.copy(), start_new_session=True)
    print(f"\nconcord demo: worker starting; health {url}/healthz  ready {url}/readyz  metrics {url}/metrics")
    print("concord demo: press Ctrl-C to stop (Kafka and Redis started here are stopped too)\n", flush=True)
    try:
        while worker.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nconcord demo: stopping ...", flush=True)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        infra_cli.run(argparse.Namespace(**{**vars(args), "action": "down", "session": session}))
    return 0 if worker.returncode in (0, -signal.SIGTERM) else 1
