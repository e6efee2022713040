"""The ``hetzner`` provider: the grid's nodes as Hetzner Cloud servers (extra ``hetzner``).

A server is created with the node's name, the cloud-init of ``autoscaler.cloudinit`` (which
installs rgrid's worker and joins the Ray cluster) and the labels ``rgrid-grid=<label>``,
``rgrid-node=<name>`` and ``rgrid-kind=<server type>``; the grid label is how a restarted
server finds its nodes again. The ``hcloud`` client blocks, so each call runs in a worker
thread. Prices are Hetzner's gross hourly prices in the configured location, as integer micros.

The API token goes to the ``hcloud`` client only: it is kept in no attribute of ours, and is
removed from every message this module raises or logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TypeVar

import rgrid
from rgrid import errors
from rgrid.autoscaler import ProviderNode, cloudinit
from rgrid.autoscaler.policy import NodeKind

if TYPE_CHECKING:
    from hcloud.server_types import BoundServerType
    from hcloud.servers import BoundServer

    from rgrid.settings import ServerSettings

logger = logging.getLogger(__name__)

#: Hetzner bills servers by the hour
BILLING_PERIOD_S = 3600.0
#: how long one API request may take (hcloud's default is to wait forever)
REQUEST_TIMEOUT_S = 30.0
MICROS = Decimal(1_000_000)
GRID_LABEL = "rgrid-grid"
NODE_LABEL = "rgrid-node"
KIND_LABEL = "rgrid-kind"
#: a server in this state is on its way out and no longer counts as a node
DELETING = "deleting"
INSTALL_HINT = "pip install 'rgrid[hetzner]'"
T = TypeVar("T")


class HetznerProvider:
    """Hetzner Cloud servers in one location, from one image, labelled for one grid.

    ``join_address`` is the Ray cluster's ``HOST:PORT`` as the servers reach it, ``install``
    the pip requirement their cloud-init installs, ``ssh_keys`` names of SSH keys of the
    project given to each server. Every method raises ``errors.ProviderError`` when the API
    refuses or cannot be reached. The constructor raises ``errors.InvalidRequest`` for a join
    address or install spec cloud-init cannot take, ``errors.MissingExtra`` without ``hcloud``.
    """

    name = "hetzner"
    #: the smallest shared-vCPU x86 type, when RGRID_AUTOSCALE_KIND names none
    default_kind = "cx22"

    def __init__(
        self,
        token: str,
        *,
        join_address: str,
        install: str,
        endpoint: str,
        location: str,
        image: str,
        label: str,
        ssh_keys: Sequence[str] = (),
    ) -> None:
        # checked now, so a bad join address or install spec fails at startup, not at the
        # first scale-up
        cloudinit.user_data(name="check", join_address=join_address, slots=1, install=install)
        try:
            import hcloud
        except ImportError as exc:
            raise errors.MissingExtra(
                "the Hetzner Cloud provider needs hcloud", hint=INSTALL_HINT
            ) from exc
        self._client = hcloud.Client(
            token=token,
            api_endpoint=endpoint,
            application_name="rgrid",
            application_version=rgrid.__version__,
            timeout=REQUEST_TIMEOUT_S,
        )
        # the token only as far as scrubbing messages needs it: no attribute a repr shows
        self._redact = _redactor(token)
        self._join = join_address
        self._install = install
        self._endpoint = endpoint
        self._location = location
        self._image = image
        self._label = label
        self._ssh_keys = tuple(ssh_keys)
        self._kinds: dict[str, NodeKind] | None = None

    def __repr__(self) -> str:
        return (
            f"HetznerProvider(endpoint={self._endpoint!r}, location={self._location!r}, "
            f"image={self._image!r}, label={self._label!r})"
        )

    async def kinds(self) -> dict[str, NodeKind]:
        """The server types priced in the location and not deprecated there, by name: their
        cores as slots, their gross hourly price in micros, billed by the hour."""
        return await self._call("list server types", self._kinds_now)

    async def create(self, kind: NodeKind, name: str) -> ProviderNode:
        """Create server ``name`` of type ``kind.name``; it boots, installs the worker and
        joins the cluster on its own (the node is returned before it has joined)."""
        data = cloudinit.user_data(
            name=name, join_address=self._join, slots=kind.slots, install=self._install
        )
        server = await self._call("create a server", self._create_now, kind, name, data)
        node = ProviderNode(
            provider_id=str(server.id),
            name=name,
            kind=kind.name,
            hourly_price_micros=kind.hourly_price_micros,
            billing_period_s=kind.billing_period_s,
            created_at=_utc(server.created),
        )
        logger.info(
            "Hetzner server created",
            extra={"action": "node_created", "node": name, "server_id": node.provider_id},
        )
        return node

    async def nodes(self) -> list[ProviderNode]:
        """The servers labelled ``rgrid-grid=<label>`` that are not being deleted (a stopped
        one is listed: it is still billed, and the autoscaler deletes it when it never joins)."""
        servers = await self._call("list servers", self._servers_now)
        return [await self._node(server) for server in servers if server.status != DELETING]

    async def delete(self, node: ProviderNode) -> None:
        """Delete the server; one that is already gone is no error."""
        await self._call("delete a server", self._delete_now, node.provider_id)
        logger.info(
            "Hetzner server deleted",
            extra={"action": "node_deleted", "node": node.name, "server_id": node.provider_id},
        )

    # -- the blocking calls, run in a worker thread by ``_call``

    def _kinds_now(self) -> dict[str, NodeKind]:
        found: dict[str, NodeKind] = {}
        for server_type in self._client.server_types.get_all():
            kind = self._kind_of(server_type)
            if kind is not None and not self._deprecated_here(server_type):
                found[kind.name] = kind
        self._kinds = found
        return found

    def _create_now(self, kind: NodeKind, name: str, data: str) -> BoundServer:
        from hcloud.images import Image
        from hcloud.locations import Location
        from hcloud.server_types import ServerType
        from hcloud.ssh_keys import SSHKey

        response = self._client.servers.create(
            name=name,
            server_type=ServerType(name=kind.name),
            image=Image(name=self._image),
            location=Location(name=self._location),
            user_data=data,
            labels={GRID_LABEL: self._label, NODE_LABEL: name, KIND_LABEL: kind.name},
            ssh_keys=[SSHKey(name=key) for key in self._ssh_keys] or None,
        )
        # the response also holds a root password when no SSH key was given: never kept
        return response.server

    def _servers_now(self) -> list[BoundServer]:
        return self._client.servers.get_all(label_selector=f"{GRID_LABEL}={self._label}")

    def _delete_now(self, provider_id: str) -> None:
        from hcloud import APIException
        from hcloud.servers import Server

        try:
            self._client.servers.delete(Server(id=int(provider_id)))
        except APIException as exc:
            if exc.code not in ("not_found", 404):
                raise
            logger.info(
                "Hetzner server was already gone",
                extra={"action": "node_already_deleted", "server_id": provider_id},
            )

    # -- helpers

    async def _node(self, server: BoundServer) -> ProviderNode:
        """A listed server as a node; its price from its own server type's price list, else
        from the kinds (asked once), else 0 (logged: the grid then underestimates its cost)."""
        labels = server.labels or {}
        server_type, location = server.server_type, server.location
        kind_name = labels.get(KIND_LABEL) or (server_type.name if server_type else None) or "?"
        price = None
        if server_type is not None and location is not None and location.name:
            price = _hourly_micros(server_type.prices, location.name)
        if price is None:
            kinds = self._kinds if self._kinds is not None else await self.kinds()
            known = kinds.get(kind_name)
            price = known.hourly_price_micros if known else None
        if price is None:
            logger.warning(
                "no price known for Hetzner server type %s",
                kind_name,
                extra={"action": "node_price_unknown", "server_id": str(server.id)},
            )
        return ProviderNode(
            provider_id=str(server.id),
            name=labels.get(NODE_LABEL) or server.name or str(server.id),
            kind=kind_name,
            hourly_price_micros=price or 0,
            billing_period_s=BILLING_PERIOD_S,
            created_at=_utc(server.created),
        )

    def _kind_of(self, server_type: BoundServerType) -> NodeKind | None:
        price = _hourly_micros(server_type.prices, self._location)
        if price is None or not server_type.name or not server_type.cores:
            return None
        return NodeKind(server_type.name, server_type.cores, price, BILLING_PERIOD_S)

    def _deprecated_here(self, server_type: BoundServerType) -> bool:
        """Whether the type is deprecated in the location (per-location deprecation is where
        the API says it now; the type-wide flag is itself deprecated)."""
        for entry in server_type.locations or ():
            if entry.location.name == self._location:
                return entry.deprecation is not None
        return False

    async def _call(self, what: str, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking hcloud call in a worker thread, its errors as ProviderError."""
        with self._wrap_errors(what):
            return await asyncio.to_thread(function, *args)

    @contextlib.contextmanager
    def _wrap_errors(self, what: str) -> Iterator[None]:
        """hcloud and requests errors become ``errors.ProviderError`` naming what failed,
        with the token scrubbed from the text."""
        from hcloud import APIException, HCloudException
        from requests import RequestException

        try:
            yield
        except APIException as exc:
            message = f"Hetzner Cloud refused to {what}: {exc.code}: {exc.message}"
            raise errors.ProviderError(self._redact(message)) from exc
        except (HCloudException, RequestException) as exc:
            message = f"Hetzner Cloud could not {what}: {type(exc).__name__}: {exc}"
            raise errors.ProviderError(self._redact(message)) from exc
        except (KeyError, TypeError, ValueError) as exc:
            # hcloud parses answers by indexing: a malformed one fails this way
            message = f"Hetzner Cloud gave an unexpected answer to {what}: {exc!r}"
            raise errors.ProviderError(self._redact(message)) from exc


def from_settings(settings: ServerSettings, join_address: str) -> HetznerProvider:
    """The provider configured by ``RGRID_HETZNER_*``; new servers join Ray at ``join_address``.

    Raises ``errors.InvalidRequest`` when no token is set, ``errors.MissingExtra`` when the
    ``hetzner`` extra is not installed.
    """
    if settings.hetzner_token is None or not settings.hetzner_token.get_secret_value():
        raise errors.InvalidRequest(
            "RGRID_HETZNER_TOKEN is not set",
            hint="create an API token (read & write) in the Hetzner Cloud console's project "
            "security settings and set it as RGRID_HETZNER_TOKEN",
        )
    keys = [key.strip() for key in settings.hetzner_ssh_keys.split(",") if key.strip()]
    return HetznerProvider(
        settings.hetzner_token.get_secret_value(),
        join_address=join_address,
        install=settings.hetzner_install or f"rgrid[worker]=={rgrid.__version__}",
        endpoint=settings.hetzner_endpoint,
        location=settings.hetzner_location,
        image=settings.hetzner_image,
        label=settings.hetzner_label,
        ssh_keys=keys,
    )


def _hourly_micros(prices: list[dict[str, Any]] | None, location: str) -> int | None:
    """The gross hourly price in ``location`` as integer micros (decimal strings, never
    floats: 0.0061880000 EUR is exactly 6188); None when the list has no price there."""
    for price in prices or ():
        if price.get("location") == location:
            try:
                gross = Decimal(str(price["price_hourly"]["gross"]))
            except (KeyError, TypeError, InvalidOperation):
                return None
            return int((gross * MICROS).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return None


def _redactor(secret: str) -> Callable[[str], str]:
    """A function replacing ``secret`` in a text (an empty secret replaces nothing)."""
    return lambda text: text.replace(secret, "<token>") if secret else text


def _utc(moment: datetime | None) -> datetime:
    """A server's creation time, tz-aware in UTC (the API gives ISO 8601 with an offset)."""
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
