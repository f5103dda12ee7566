"""`concord infra up|down|status|wipe`: local Kafka (KRaft) and Redis without Docker."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from concord.infra import kafka, redis
from concord.infra.process import InfraError, read_pid


def default_cache() -> Path:
    """`.cache/` of the checkout (git-ignored), or of the current folder for a non-editable install."""
    if "CONCORD_INFRA_CACHE" in os.environ:
        return Path(os.environ["CONCORD_INFRA_CACHE"]).resolve()
    checkout = Path(__file__).resolve().parents[1]
    base = checkout if (checkout / "pyproject.toml").exists() else Path.cwd()
    return base / ".cache"


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name}={value!r} is not valid: expected a port number") from None


def _optional_int_env(name: str) -> int | None:
    return _int_env(name, 0) if name in os.environ else None


def add_arguments(parser: argparse.ArgumentParser, with_action: bool = True, with_session: bool = True) -> None:
    """Options shared by every infra command (also used by `concord infra` and `concord demo`).

    `concord demo` takes neither the action nor `--session`: it brings the infra up and down itself and
    keeps its own session file (`<cache>/demo-session.json`).
    """
    if with_action:
        _add_action(parser)
    _add_options(parser, with_session)


def _add_action(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status", "wipe"],
                        help="up: start (or reuse) Kafka and Redis; down: stop what infra started; "
                        "status: say what runs where; wipe: delete Kafka's data (jars stay)")


def _add_options(parser: argparse.ArgumentParser, with_session: bool = True) -> None:
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help="folder for Kafka's jars, data and logs, and Redis' log (default: %(default)s)")
    parser.add_argument("--kafka-port", type=int, default=_int_env("CONCORD_INFRA_KAFKA_PORT", 9092),
                        help="Kafka client port (env CONCORD_INFRA_KAFKA_PORT; default: %(default)s)")
    parser.add_argument("--controller-port", type=int,
                        default=_int_env("CONCORD_INFRA_CONTROLLER_PORT", 9093),
                        help="KRaft controller port (env CONCORD_INFRA_CONTROLLER_PORT; default: %(default)s)")
    parser.add_argument("--sasl-port", type=int, default=_optional_int_env("CONCORD_INFRA_SASL_PORT"),
                        help="Kafka's SASL_SSL listener (SCRAM-SHA-512 over TLS; env CONCORD_INFRA_SASL_PORT; "
                        "default: the Kafka port + 2)")
    parser.add_argument("--redis-port", type=int, default=_int_env("CONCORD_INFRA_REDIS_PORT", 6379),
                        help="Redis port (env CONCORD_INFRA_REDIS_PORT; default: %(default)s)")
    parser.add_argument("--kafka-version", default=os.environ.get("CONCORD_INFRA_KAFKA_VERSION",
                                                                 kafka.DEFAULT_VERSION),
                        help="Apache Kafka version from Maven Central (default: %(default)s)")
    if with_session:
        parser.add_argument("--session", type=Path, default=None,
                            help="up: record in this file what this call started; down: stop only those "
                            "(so `make test` leaves running what it found running)")


def nodes(args: argparse.Namespace) -> tuple[kafka.KafkaNode, redis.RedisNode]:
    cache: Path = args.cache
    return (
        kafka.KafkaNode(cache=cache / "kafka", port=args.kafka_port, controller_port=args.controller_port,
                        version=args.kafka_version, sasl_port=args.sasl_port),
        redis.RedisNode(cache=cache / "redis", port=args.redis_port),
    )


def run(args: argparse.Namespace) -> int:
    knode, rnode = nodes(args)
    try:
        if args.action == "up":
            started = {"kafka": kafka.start(knode), "redis": redis.start(rnode)}
            for name, did in started.items():
                if not did:
                    print(f"infra: {name} already running, reused", flush=True)
            if args.session:
                args.session.parent.mkdir(parents=True, exist_ok=True)
                args.session.write_text(json.dumps(started))
            _status(knode, rnode)
        elif args.action == "down":
            wanted = {"kafka": True, "redis": True}
            if args.session:
                wanted = json.loads(args.session.read_text()) if args.session.exists() else {}
                args.session.unlink(missing_ok=True)
            if wanted.get("kafka"):
                print("infra: Kafka " + ("stopped" if kafka.stop(knode) else "was not started by infra"))
            if wanted.get("redis"):
                print("infra: Redis " + ("stopped" if redis.stop(rnode) else "was not started by infra"))
        elif args.action == "status":
            return 0 if _status(knode, rnode) else 3
        elif args.action == "wipe":
            kafka.wipe(knode)
            print(f"infra: deleted {knode.data}")
    except InfraError as exc:
        print(f"infra: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _status(knode: kafka.KafkaNode, rnode: redis.RedisNode) -> bool:
    rows = [
        ("kafka", kafka.running(knode), f"kafka://{knode.bootstrap}", read_pid(knode.pid_file), knode.log_file),
        ("redis", redis.running(rnode), f"redis://127.0.0.1:{rnode.port}/0", read_pid(rnode.pid_file),
         rnode.log_file),
    ]
    for name, up, url, pid, log in rows:
        owner = f"pid {pid}, log {log}" if pid else "not started by infra"
        print(f"  {name:6} {'up  ' if up else 'down'} {url:28} {owner if up else ''}".rstrip())
    sasl_up = kafka.sasl_running(knode)
    print(f"  {'kafka':6} {'up  ' if sasl_up else 'down'} {'kafka://' + knode.sasl_bootstrap:28} "
          f"SASL_SSL, {kafka.SASL_MECHANISM} user {kafka.SASL_USER!r}"
          + (f": CA {knode.ca_file}, password in {knode.password_file}" if sasl_up else
             " (a broker started without it: `infra down` and `infra up` open it)" if rows[0][1] else ""))
    return all(up for _, up, *_ in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m concord.infra", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
