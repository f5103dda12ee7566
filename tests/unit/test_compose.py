"""docker-compose.yml cannot run here (no Docker engine): check it against the settings instead."""

from __future__ import annotations

import yaml

from concord.core import settings as settings_mod
from tests.conftest import REPO_ROOT


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_services_present() -> None:
    services = _compose()["services"]
    assert {"kafka", "redis", "worker", "webhooks", "prometheus"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["worker"]["build"] == "."
    assert (REPO_ROOT / "Dockerfile").exists()


def test_worker_environment_is_valid_settings_pointing_at_the_services() -> None:
    services = _compose()["services"]
    env = {k: str(v) for k, v in services["worker"]["environment"].items()}
    settings = settings_mod.load(env)  # raises on an unknown or bad CONCORD_* variable
    kafka_host, kafka_port = settings_mod.kafka_bootstrap(settings).split(":")
    assert kafka_host == "kafka"
    assert f"PLAINTEXT://kafka:{kafka_port}" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert settings.redis_url.startswith("redis://redis:6379")
    assert "6379:6379" in services["redis"]["ports"]
    assert f"{settings.web_port}:{settings.web_port}" in services["worker"]["ports"]
    assert settings.web_host == "0.0.0.0"


def test_prometheus_scrapes_the_worker_metrics_port() -> None:
    services = _compose()["services"]
    volume = services["prometheus"]["volumes"][0].split(":")[0]
    config = yaml.safe_load((REPO_ROOT / volume).read_text())
    env = {k: str(v) for k, v in services["worker"]["environment"].items()}
    port = settings_mod.load(env).web_port
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert f"worker:{port}" in targets
    assert config["scrape_configs"][0]["metrics_path"] == "/metrics"


def test_the_webhooks_process_takes_the_sandbox_s_deliveries_and_is_scraped() -> None:
    services = _compose()["services"]
    webhooks = services["webhooks"]
    assert webhooks["command"][:2] == ["concord", "webhooks"] and "profiles" not in webhooks  # both deployments
    port = settings_mod.load({k: str(v) for k, v in webhooks["environment"].items()}).web_port
    assert f"6071:{port}" in webhooks["ports"]
    assert f"${{SANDBOX_CONCORD_URL:-http://webhooks:{port}}}" in services["sandbox"]["command"]
    # The worker serves every other role: no second ingress beside the webhooks process.
    assert services["worker"]["command"][-2:] == ["--roles", "ingest,state,commands"]
    volume = services["prometheus"]["volumes"][0].split(":")[0]
    config = yaml.safe_load((REPO_ROOT / volume).read_text())
    targets = [t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert f"webhooks:{port}" in targets


def test_prometheus_scrapes_the_split_processes_too() -> None:
    services = _compose()["services"]
    volume = services["prometheus"]["volumes"][0].split(":")[0]
    config = yaml.safe_load((REPO_ROOT / volume).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert len(jobs) == len(config["scrape_configs"])  # job names are unique
    split = [name for name, service in services.items() if service.get("profiles") == ["split"]]
    assert sorted(split) == ["commands", "ingest", "state"]
    discovered = {}
    for job in jobs.values():
        assert job["metrics_path"] == "/metrics"
        for sd in job.get("dns_sd_configs", []):
            assert sd["type"] == "A"  # Docker's DNS answers A records, one per replica
            discovered.update(dict.fromkeys(sd["names"], sd["port"]))
    for name in split:
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        assert discovered.get(name) == settings_mod.load(env).web_port, f"Prometheus does not scrape {name}"
    # Prometheus must not pull `worker` into a split deployment.
    assert "worker" not in services["prometheus"].get("depends_on", [])


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> host path (relative to the checkout) of a service's bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        out[container] = host.removeprefix("./")
    return out


def test_prometheus_loads_the_alert_rules_mounted_beside_its_configuration() -> None:
    prometheus = _compose()["services"]["prometheus"]
    mounts = _mounts(prometheus)
    config_path = next(c for c, h in mounts.items() if h == "infra/prometheus/prometheus.yml")
    config = yaml.safe_load((REPO_ROOT / mounts[config_path]).read_text())
    assert config["rule_files"] == ["alerts.yml"]
    # A relative rule file is read beside the configuration file, in the container as in a test's folder.
    in_container = config_path.rsplit("/", 1)[0] + "/alerts.yml"
    assert mounts[in_container] == "infra/prometheus/alerts.yml"
    assert (REPO_ROOT / mounts[in_container]).exists()


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_concord_s_dashboard() -> None:
    import json

    services = _compose()["services"]
    grafana = services["grafana"]
    mounts = _mounts(grafana)
    for host in mounts.values():
        assert (REPO_ROOT / host).is_dir(), f"grafana mounts {host}, which does not exist"
    datasources = yaml.safe_load((REPO_ROOT / mounts["/etc/grafana/provisioning/datasources"] /
                                  "prometheus.yml").read_text())["datasources"]
    (source,) = datasources
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090" and "9090:9090" in services["prometheus"]["ports"]
    assert "prometheus" in grafana["depends_on"]
    providers = yaml.safe_load((REPO_ROOT / mounts["/etc/grafana/provisioning/dashboards"] /
                                "concord.yml").read_text())["providers"]
    (provider,) = providers
    dashboards = REPO_ROOT / mounts[provider["options"]["path"]]  # the provider reads the mounted folder
    (dashboard_file,) = dashboards.glob("*.json")
    dashboard = json.loads(dashboard_file.read_text())
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == (
        f"{provider['options']['path']}/{dashboard_file.name}")
    used = {panel["datasource"]["uid"] for panel in dashboard["panels"] if panel["type"] != "row"}
    used |= {t["datasource"]["uid"] for panel in dashboard["panels"] for t in panel.get("targets", [])}
    assert used == {source["uid"]}


def test_split_deployment_commands_keep_the_webhooks_process() -> None:
    wanted = "docker compose --profile split up"
    for doc in ("README.md", "docker-compose.yml"):
        lines = iter((REPO_ROOT / doc).read_text().split(wanted, 1)[1].splitlines())
        command = [next(lines)]  # the shell command, continued over lines ending with a backslash
        while command[-1].endswith("\\"):
            command.append(next(lines).lstrip("# "))
        words = " ".join(command).replace("\\", " ").split()
        assert {"webhooks", "ingest", "state", "commands", "sandbox", "prometheus"} <= set(words), f"{doc}: {words}"
        assert "worker" not in words


def _procfile() -> dict[str, str]:
    return dict(line.split(": ", 1) for line in (REPO_ROOT / "Procfile").read_text().splitlines()
                if line and not line.startswith("#"))


def test_procfile_runs_the_worker_beside_the_webhooks_process() -> None:
    from concord.app.demo import PROCESSES, WEBHOOKS_PORT

    entries = _procfile()
    assert entries["worker"] == "concord worker -l info --roles ingest,state,commands"
    assert entries["webhooks"] == f"CONCORD_WEB_PORT=${{WEBHOOKS_PORT:-{WEBHOOKS_PORT}}} concord webhooks -l info"
    # Run on its own, the sandbox delivers to the webhooks process too.
    assert f"--concord-url ${{SANDBOX_CONCORD_URL:-http://127.0.0.1:{WEBHOOKS_PORT}}}" in entries["sandbox"]
    assert set(PROCESSES) <= set(entries)


def test_procfile_runs_the_sandbox_and_shows_a_split_deployment() -> None:
    entries = _procfile()
    assert entries["sandbox"].startswith("concord sandbox ")
    for role in ("ingest", "state", "commands"):
        assert entries[role].endswith(f"concord worker -l info --roles {role}")
    ports = [entries[name].split("CONCORD_WEB_PORT=")[1].split()[0] for name in ("ingest", "state", "commands")]
    ports.append(entries["webhooks"].split("CONCORD_WEB_PORT=${WEBHOOKS_PORT:-")[1].split("}")[0])
    assert len({*ports, "6066", "6070"}) == 6  # no two processes fight over one port (worker 6066, sandbox 6070)


def test_sandbox_and_split_services_share_valid_settings_aimed_at_the_sandbox() -> None:
    services = _compose()["services"]
    for name in ("sandbox", "webhooks", "ingest", "state", "commands"):
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        settings = settings_mod.load(env)
        assert settings.stripe_api_url == "http://sandbox:6070"
        assert settings.zendesk_url == "http://sandbox:6070"
        assert settings.stripe_webhook_secret  # the sandbox signs what the worker verifies
    for role in ("ingest", "state", "commands"):
        assert services[role]["command"][-2:] == ["--roles", role]
        assert services[role]["profiles"] == ["split"]
    assert "6070:6070" in services["sandbox"]["ports"]


def test_compose_rules_are_the_demo_s_scaled_rules() -> None:
    import json

    from concord.app.demo import scaled_rules

    services = _compose()["services"]
    path = services["worker"]["environment"]["CONCORD_RULES_FILE"].removeprefix("/srv/concord/")
    assert json.loads((REPO_ROOT / path).read_text()) == scaled_rules(3600)
    assert "--concord-url" in services["sandbox"]["command"]


def test_the_bridge_subscribes_to_the_sandbox_s_pub_sub_api() -> None:
    services = _compose()["services"]
    bridge = services["bridge"]
    assert bridge["command"][:3] == ["concord", "bridge", "salesforce"] and "profiles" not in bridge
    settings = settings_mod.load({k: str(v) for k, v in bridge["environment"].items()})
    sandbox = services["sandbox"]["command"]
    assert sandbox[sandbox.index("--salesforce-delivery") + 1] == "pubsub"
    assert settings.salesforce_pubsub_url == f"grpc://sandbox:{sandbox[sandbox.index('--pubsub-port') + 1]}"
    assert settings.salesforce_org_id  # the demo token names no org


def test_the_image_copies_every_folder_the_package_is_built_from() -> None:
    import tomllib

    folders = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
                  .values())
    copied = {line.split()[1] for line in (REPO_ROOT / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ")}
    assert folders <= copied, f"the Dockerfile does not copy {sorted(folders - copied)}"
