"""The cloud-init document a new cloud server boots with: it installs rgrid's worker into a venv
and runs ``ray start --block`` as a systemd service that joins the grid's Ray cluster with the
node's ``rgrid-node-<name>`` resource.

Every value put into the document is validated or quoted for each language it passes through
(YAML, sh, systemd), so a hostile name or address cannot add a line, a key or a command.
"""

from __future__ import annotations

import json
import re
import shlex

from rgrid import errors
from rgrid.autoscaler import node_resource

#: where the worker's venv lives on the server
VENV = "/opt/rgrid"
UNIT = "rgrid-node"
#: the sandbox (bubblewrap, slirp4netns for its own network) and a venv for rgrid
APT_PACKAGES = ("bubblewrap", "slirp4netns", "python3-venv", "python3-pip")

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
# a host name or IPv4 address, or a bracketed IPv6 address; then a port
_ADDRESS = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\]):([0-9]{1,5})"
)
# words systemd's ExecStart takes as they are (anything else is double-quoted and escaped)
_SYSTEMD_PLAIN = re.compile(r"[A-Za-z0-9_./:=,@+-]+")


def user_data(*, name: str, join_address: str, slots: int, install: str) -> str:
    """The ``#cloud-config`` text for node ``name``: apt installs ``APT_PACKAGES``, a venv at
    ``VENV`` gets ``pip install <install>`` (a requirement such as ``rgrid[worker]==0.1.0``),
    and the ``rgrid-node`` service runs Ray with ``slots`` CPUs, joined to ``join_address``
    (``HOST:PORT``) and restarted when it fails.

    Raises ``errors.InvalidRequest`` for a name that is not a lower-case host name label, an
    address that is not ``HOST:PORT``, fewer than one slot, or an install that is empty or not
    printable ASCII.
    """
    _check(name=name, join_address=join_address, slots=slots, install=install)
    lines = ["#cloud-config", "package_update: true", "packages:"]
    lines += [f"  - {package}" for package in APT_PACKAGES]
    lines += [
        "write_files:",
        f"  - path: {_yaml(f'/etc/systemd/system/{UNIT}.service')}",
        '    permissions: "0644"',
        "    content: |",
    ]
    # a literal block: safe because no validated value can hold a line break
    lines += [f"      {line}" if line else "" for line in _unit(name, join_address, slots)]
    lines.append("runcmd:")
    commands = [
        f"python3 -m venv {VENV}",
        f"{VENV}/bin/pip install --no-input {shlex.quote(install)}",
        "systemctl daemon-reload",
        f"systemctl enable --now {UNIT}",
    ]
    lines += [f"  - {_yaml(command)}" for command in commands]
    return "\n".join(lines) + "\n"


def _check(*, name: str, join_address: str, slots: int, install: str) -> None:
    if not _NAME.fullmatch(name):
        raise errors.InvalidRequest(
            f"invalid node name {name!r}",
            hint="a node name is 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit",
        )
    match = _ADDRESS.fullmatch(join_address)
    if match is None or not 0 < int(match.group(1)) < 65536:
        raise errors.InvalidRequest(
            f"invalid Ray join address {join_address!r}",
            hint="give it as HOST:PORT (RGRID_AUTOSCALE_JOIN_ADDRESS), e.g. 10.0.0.2:6379",
        )
    if slots < 1:
        raise errors.InvalidRequest(f"a node needs at least one slot, not {slots}")
    # printable ASCII: a pip requirement needs no more, and nothing else can break a line
    if not (install.strip() and install.isascii() and install.isprintable()):
        raise errors.InvalidRequest(
            f"invalid install requirement {install!r}",
            hint="RGRID_HETZNER_INSTALL is one pip requirement, e.g. rgrid[worker]==0.1.0",
        )


def _unit(name: str, join_address: str, slots: int) -> list[str]:
    """The systemd unit's lines."""
    command = [
        f"{VENV}/bin/ray",
        "start",
        "--block",
        f"--address={join_address}",
        f"--num-cpus={slots}",
        f"--resources={json.dumps({node_resource(name): 1})}",
    ]
    return [
        "[Unit]",
        f"Description=rgrid worker node {name}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Environment=RAY_USAGE_STATS_ENABLED=0",
        "ExecStart=" + " ".join(_systemd_word(word) for word in command),
        "Restart=on-failure",
        "RestartSec=5",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]


def _systemd_word(word: str) -> str:
    """One ExecStart word as systemd reads it back: plain when it can be, else double-quoted
    with C escapes; ``%`` (specifiers) and ``$`` (variables) are doubled either way, since
    systemd expands them inside quotes too."""
    word = word.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_PLAIN.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _yaml(text: str) -> str:
    """A YAML double-quoted scalar: JSON's string syntax is valid YAML and escapes every
    character that could end the scalar or start a new line."""
    return json.dumps(text)
