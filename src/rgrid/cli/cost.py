"""`rgrid cost`: what your executions cost, grouped by day, batch or a metadata key."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from rgrid.cli import render
from rgrid.cli.options import utc_time
from rgrid.money import slot_cost

if TYPE_CHECKING:
    from rgrid import schemas
    from rgrid.client import Client


@click.group(invoke_without_command=True)
@click.option("--since", metavar="DATE", help="Only executions created at or after DATE.")
@click.option("--until", metavar="DATE", help="Only executions created before DATE.")
@click.option(
    "--by", default="day", show_default=True, metavar="day|batch|metadata:KEY", help="Grouping."
)
@click.option("--json", "as_json", is_flag=True, help="The report as JSON (amounts in micros).")
@click.pass_context
def cost(ctx: click.Context, since: str | None, until: str | None, by: str, as_json: bool) -> None:
    """What your executions cost: per group, executions, compute time and cost; a total.
    Amounts are exact (integer micros, 1 EUR = 1,000,000); running ones count so far. With an
    admin key also the grid's idle cost: paid billing periods in which nothing ran.
    `rgrid cost limit` sets a spending limit."""
    from rgrid.cli.context import connect

    if ctx.invoked_subcommand is not None:
        return
    report = connect().cost(
        since=utc_time(since, "--since"), until=utc_time(until, "--until"), by=by
    )
    if as_json:
        render.emit_json(report)
        return
    render.line(f"{by.upper():<24} {'EXECUTIONS':>10} {'COMPUTE':>10} {'COST':>14}")
    for group in report["groups"]:
        render.line(
            f"{group['group']:<24} {group['executions']:>10} "
            f"{render.duration(group['compute_us'] / 1e6):>10} {render.money(group['cost_micros']):>14}"
        )
    total = report["total"]
    render.line(
        f"{'total':<24} {total['executions']:>10} "
        f"{render.duration(total['compute_us'] / 1e6):>10} {render.money(total['cost_micros']):>14}"
    )
    idle = report.get("idle")
    if idle and idle["periods"]:
        render.line(
            f"idle: {render.money(idle['micros'])} over {idle['periods']} paid billing periods "
            "in which no execution ran (charged to no account)"
        )


@cost.group()
def limit() -> None:
    """A spending limit per day, week or month: at 80 % every submit warns, at 100 % new
    executions are refused (running ones finish)."""


@limit.command(name="set", context_settings={"ignore_unknown_options": True})
@click.argument("amount")
@click.option(
    "--period", type=click.Choice(["day", "week", "month"]), default="month", show_default=True
)
def set_limit(amount: str, period: str) -> None:
    """Set the limit to AMOUNT euros (e.g. 5.00) per PERIOD."""
    from rgrid.cli.context import connect

    _show(connect().set_spending_limit(amount, period))


@limit.command(name="show")
def show_limit() -> None:
    """The limit and what was spent in this period."""
    from rgrid.cli.context import connect

    _show(connect().spending_limit())


@limit.command(name="remove")
def remove_limit() -> None:
    """Drop the limit."""
    from rgrid.cli.context import connect

    connect().remove_spending_limit()
    render.info("spending limit removed")


def _show(current: schemas.SpendingLimitPublic) -> None:
    render.line(
        f"limit {render.money(current.limit_micros)} per {current.period}; spent "
        f"{render.money(current.spent_micros)} since {render.when(current.period_start)}"
    )


@click.command()
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch", "patterns", multiple=True, metavar="GLOB", help="Items: files matched.")
@click.option("--files", type=click.IntRange(min=1), help="Items: this many.")
@click.option("--parallel", type=click.IntRange(min=1), help="At most N at once (default 10).")
def estimate(
    script: Path, patterns: tuple[str, ...], files: int | None, parallel: int | None
) -> None:
    """What running SCRIPT over N items would cost and take, from your earlier runs of it."""
    from rgrid.cli.context import connect
    from rgrid.client.batch import expand
    from rgrid.client.bundle import build_bundle

    if patterns and files:
        raise click.UsageError("give --batch or --files, not both")
    items = len(expand(patterns, 10**9)) if patterns else files or 1
    lines = estimate_lines(connect(), build_bundle(script, [], []).script, script, items, parallel)
    for line in lines:
        render.line(line)


def estimate_lines(
    client: Client, name: str, script: Path, items: int, parallel: int | None
) -> list[str]:
    """The estimate for ``items`` runs of ``script``, as lines to show."""
    from rgrid import digests

    stats = client.estimate(name, digests.of_bytes(script.read_bytes()))
    at = parallel or (10 if items > 1 else 1)
    price, slots = stats["hourly_price_micros"], stats["slots"]
    median, p90 = stats["median_us"], stats["p90_us"]

    def cost(us: int) -> str:
        return render.money(slot_cost(us * items, price, slots))

    def wall(us: int) -> str:
        return render.duration(-(-items // at) * us / 1e6)

    basis = {
        "content": f"from {stats['runs']} earlier run(s) of this script",
        "name": f"from {stats['runs']} earlier run(s) of a script named {name} "
        "(its content differs)",
        "default": f"no earlier run of {name}: using the default of "
        f"{render.duration(median / 1e6)} an item",
    }[stats["basis"]]
    return [
        f"estimate: {items} item(s) of {name}",
        f"  per item: median {render.duration(median / 1e6)}, p90 {render.duration(p90 / 1e6)}",
        f"  cost:     {cost(median)} (p90 {cost(p90)}) at {render.money(price)}/h for "
        f"{slots} slot(s)",
        f"  wall:     {wall(median)} at --parallel {at} (p90 {wall(p90)})",
        f"  {basis}",
    ]


COMMANDS = [cost, estimate]
