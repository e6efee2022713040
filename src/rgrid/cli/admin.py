"""``rgrid init``, ``rgrid doctor``, ``rgrid accounts``, ``rgrid keys``."""

from __future__ import annotations

import sys

import click

from rgrid.cli import render

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.command()
@click.option("--api-url", envvar="RGRID_API_URL", help="The grid's URL [RGRID_API_URL].")
@click.option("--profile", default="default", show_default=True, envvar="RGRID_PROFILE")
def init(api_url: str | None, profile: str) -> None:
    """Ask for an API key, check it against the grid, save it to ~/.rgrid/credentials (0600)."""
    from rgrid.client import Client
    from rgrid.client.config import write_profile

    url = api_url or click.prompt("grid URL", default="http://127.0.0.1:8765", err=True)
    if sys.stdin.isatty():
        key = click.prompt("API key", hide_input=True, err=True).strip()
    else:  # piped (`echo "$KEY" | rgrid init`): getpass would read the terminal instead
        key = sys.stdin.readline().strip()
    me = Client(url, key).me()
    path = write_profile(profile, url, key)
    render.info(f"key for account {me.account.name} ({me.account.id}) saved to {path} [{profile}]")


def _check(label: str, ok: bool | None, detail: str) -> None:
    mark = {True: "ok  ", False: "FAIL", None: "warn"}[ok]
    render.line(f"[{mark}] {label:<10} {detail}")


@click.command()
def doctor() -> None:
    """What this machine offers: sandbox, Python, uv, the grid and its storage."""
    from rgrid import errors
    from rgrid.client import Client, config, daemon
    from rgrid.envs.pythons import python_version, real_interpreter

    try:
        from rgrid import sandbox

        box = sandbox.detect()
        _check("sandbox", box.name == "bwrap" or None, box.strength)
    except Exception as exc:  # doctor reports, never crashes
        _check("sandbox", False, str(exc))
    _check("python", True, f"{python_version()} at {real_interpreter()}")
    try:  # the uv the grid itself would use (the uv package's binary, else PATH)
        from rgrid.envs.build import find_uv

        _check("uv", True, find_uv())
    except errors.MissingExtra:
        _check("uv", None, "not found (needed by the dependencies feature)")
    target = config.resolve_target()
    if target.api_url is None:
        info = daemon.status(config.local_home())
        if info is None:
            _check("grid", None, f"{target.source}: not running (starts on first `rgrid run`)")
            return
        client = Client(info.url, info.admin_key)
    else:
        client = Client(target.api_url, target.api_key)
    try:
        health = client.health()
        me = client.me()
    except Exception as exc:
        _check("grid", False, f"{target.source}: {exc}")
        sys.exit(1)
    _check("grid", True, f"{client.base_url} ({target.source}), account {me.account.name}")
    if client.compression_policy != "auto":
        why = f"RGRID_COMPRESSION={client.compression_policy}"
    else:
        why = "a remote grid" if client.compresses else "the grid is on this machine"
    _check("transfers", True, f"zstd compression {'on' if client.compresses else 'off'} ({why})")
    _check("storage", health.storage == "ok", health.storage)
    _check("store", health.store == "ok", health.store)
    _check("worker", True, f"sandbox on the grid: {health.sandbox}")
    runtimes = client.runtimes()
    presets = ", ".join(f"{name} ({' '.join(pkgs)})" for name, pkgs in runtimes.presets.items())
    _check("runtimes", True, f"{', '.join(runtimes.pythons)} (default {runtimes.default})")
    _check("presets", True, presets or "none")


@click.group()
def accounts() -> None:
    """Accounts (admin key only)."""


@accounts.command(name="create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Give the account admin rights.")
@json_option
def create_account(name: str, admin: bool, as_json: bool) -> None:
    """Create an account and print its first API key (shown once)."""
    from rgrid.cli.context import connect

    created = connect().create_account(name, admin)
    if as_json:
        render.emit_json(created)
        return
    render.info(f"account {created.account.id} ({name}) created; its API key (shown once):")
    click.echo(created.key)


@click.group()
def keys() -> None:
    """API keys."""


@keys.command(name="create")
@click.option("--name", default="", help="A label for the key.")
@click.option("--account", "account_id", help="Another account (admin only).")
@json_option
def create_key(name: str, account_id: str | None, as_json: bool) -> None:
    """Create an API key (printed once)."""
    from rgrid.cli.context import connect

    created = connect().create_key(name, account_id)
    if as_json:
        render.emit_json(created)
        return
    render.info(f"key {created.info.id} created (shown once):")
    click.echo(created.key)


@keys.command(name="list")
@json_option
def list_keys(as_json: bool) -> None:
    """Your keys (admins: every key)."""
    from rgrid.cli.context import connect

    items = connect().list_keys()
    if as_json:
        render.emit_json(items)
        return
    for k in items:
        state = "revoked" if k.revoked_at else "active"
        render.line(f"{k.id:<22} {k.account_id:<22} {k.prefix}…  {state:<8} {k.name}")


@keys.command(name="revoke")
@click.argument("key_id")
def revoke_key(key_id: str) -> None:
    """Revoke a key: it stops working at once."""
    from rgrid.cli.context import connect

    revoked = connect().revoke_key(key_id)
    render.info(f"revoked {revoked.id}")


@click.command()
@json_option
def workers(as_json: bool) -> None:
    """The worker pool: each worker (a Ray node, or the server's own slots) with its state,
    slots busy/total, price, the end of its billing period, its provider id and kind when the
    autoscaler made it, its sandbox and Python runtimes; then where the autoscaler stands."""
    from rgrid.cli.context import connect

    client = connect()
    items = client.workers()
    if as_json:  # the workers only (the autoscaler's state: GET /api/v1/autoscaler)
        render.emit_json(items)
        return
    render.worker_table(items)
    render.autoscaler(client.autoscaler())


@click.command()
@click.option(
    "--no-browser", is_flag=True, help="Print the sign-in link instead of opening a browser."
)
def console(no_browser: bool) -> None:
    """Open the grid's web console in the browser, already signed in.

    The link signs in once and expires in two minutes; anyone holding it before then signs in
    as your key, so --no-browser prints it for you alone to open. Or open /console on the grid
    and paste an API key.
    """
    from rgrid.cli.context import connect

    url = connect().console_link()
    if no_browser:
        click.echo(url)
        return
    import webbrowser

    if webbrowser.open(url):
        render.info("opened the console in your browser (the link signs in once)")
    else:
        render.info("no browser to open here; open this link (it signs in once, for 2 minutes):")
        click.echo(url)


COMMANDS = [init, doctor, workers, accounts, keys, console]
