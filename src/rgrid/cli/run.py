"""``rgrid run [OPTIONS] SCRIPT [ARGS]...``: run once on the grid, as if with python here.

The grammar is python's: rgrid's options come before SCRIPT, and everything after SCRIPT is the
script's, byte for byte (``--help``, ``--batch 32``, ``--``). What the command does is in
``rgrid.cli.running``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rgrid.cli import running
from rgrid.cli.options import Duration, Size, key_values
from rgrid.enums import CACHE_MODES


@click.command(
    # parsing stops at SCRIPT: what follows is the script's, options and `--` included
    context_settings={"allow_interspersed_args": False},
    epilog="\b\nrgrid's options go before SCRIPT; everything after SCRIPT is the script's,\n"
    "byte for byte, as with python:\n"
    "  rgrid run --timeout 5m train.py --batch 32 --help   # train.py gets --batch 32 --help\n"
    "  rgrid run --batch 'data/*.csv' --parallel 8 process.py --threshold 0.5\n"
    "  rgrid run --batch 'data/*.csv' process.py --in {} --out result.json   # {}: the file",
)
@click.argument("script_arg", metavar="SCRIPT", type=click.Path(dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--env",
    "env",
    multiple=True,
    metavar="K=V",
    help="Environment variable (K alone: this shell's value); at most 32 KiB a value.",
)
@click.option("--metadata", multiple=True, metavar="K=V", help="Label for `rgrid list --metadata`.")
@click.option(
    "--timeout",
    type=Duration(),
    default="1h",
    show_default=True,
    envvar="RGRID_TIMEOUT",
    help="Wall-clock limit [RGRID_TIMEOUT].",
)
@click.option(
    "--memory",
    type=Size(),
    default="2GiB",
    show_default=True,
    envvar="RGRID_MEMORY",
    help="Memory limit [RGRID_MEMORY].",
)
@click.option(
    "--disk",
    type=Size(),
    default="10GiB",
    show_default=True,
    envvar="RGRID_DISK",
    help="What the script's working directory may hold [RGRID_DISK].",
)
@click.option(
    "--requirements",
    "requirements_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Requirements file (default: PEP 723 header, requirements.txt beside the script, else inferred from imports).",
)
@click.option(
    "--runtime",
    envvar="RGRID_RUNTIME",
    metavar="NAME",
    help="Python and preset, e.g. python3.12 or python3.11:datascience [RGRID_RUNTIME].",
)
@click.option(
    "--max-retries",
    type=click.IntRange(0, 10),
    default=2,
    show_default=True,
    envvar="RGRID_MAX_RETRIES",
    help="Automatic retries after the grid (not the script) failed [RGRID_MAX_RETRIES].",
)
@click.option("--network/--no-network", default=True, show_default=True, help="Network access.")
@click.option(
    "--include",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Extra file or directory to send.",
)
@click.option(
    "--output-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where outputs go (default: here).",
)
@click.option("--remote-only", is_flag=True, help="Keep outputs on the grid; download nothing.")
@click.option("--detach", is_flag=True, help="Submit, print the id, return.")
@click.option(
    "--batch",
    "patterns",
    multiple=True,
    metavar="GLOB",
    help="One execution per matching file (repeatable; ** recurses); the file is appended to ARGS or replaces {}.",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1, max=1000),
    default=10,
    show_default=True,
    help="With --batch: at most N at once (enforced by the grid).",
)
@click.option(
    "--flat",
    is_flag=True,
    help="With --batch: all outputs in one folder (<stem>__<name> when names collide).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="With --batch: one JSON object per state change, and a summary.",
)
@click.option(
    "--cache",
    "cache_mode",
    type=click.Choice(CACHE_MODES),
    help="Reuse an identical earlier run's result: auto (the default: not one that used the "
    "network), always (even then: its network access is deterministic), off "
    '[.rgrid/config.toml: cache = "auto"|"always"|"off"].',
)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Run even if an identical earlier run succeeded (the same as --cache off).",
)
@click.option("--yes", is_flag=True, help="Skip confirmations (large uploads).")
def run(
    script_arg: str,
    args: tuple[str, ...],
    env: tuple[str, ...],
    metadata: tuple[str, ...],
    **options: Any,
) -> None:
    """Run SCRIPT with ARGS on the grid: live output, outputs downloaded, the script's exit code.

    Piped or redirected stdin becomes the script's stdin (not with --batch); a terminal's
    gives it end-of-file."""
    running.run_script(
        script_arg,
        args,
        env=key_values(env, "--env", local_fallback=True),
        metadata=key_values(metadata, "--metadata"),
        **options,
    )


COMMANDS = [run]
