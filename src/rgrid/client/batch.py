"""The client side of batches: expand globs into items, follow the batch, fetch each item's
outputs into its own folder as it finishes, and summarise."""

from __future__ import annotations

import dataclasses
import glob
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath

from rgrid import errors, schemas
from rgrid.client import Client
from rgrid.client.bundle import Bundle, LocalFile, project_bundle

POLL_S = 0.5
#: outputs up to this size come inside the items' pages: no download request each
INLINE_BYTES = 64 * 1024
FLAT_STAGING = ".rgrid-flat"


def expand(patterns: Iterable[str], max_items: int) -> list[Path]:
    """The files the globs match (``**`` recursive), sorted, each once.

    Raises ``UsageError`` for no match, only directories, or more than ``max_items`` files.
    """
    matched: dict[str, None] = {}
    directories = 0
    for pattern in patterns:
        for name in sorted(glob.glob(pattern, recursive=True)):
            if os.path.isdir(name):
                directories += 1
            elif os.path.isfile(name):
                matched.setdefault(os.path.normpath(name), None)
    if not matched:
        what = "only directories" if directories else "no files"
        raise errors.UsageError(
            f"--batch {' '.join(patterns)} matches {what}", hint="check the pattern; quote it"
        )
    if len(matched) > max_items:
        raise errors.UsageError(
            f"--batch matches {len(matched)} files, over the maximum of {max_items} per batch",
            hint="narrow the pattern or split the work into several batches",
        )
    return [Path(name) for name in matched]


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    bundle: Bundle  # the script, its modules, shared file arguments and includes
    items: list[schemas.BatchItemIn]
    inputs: list[LocalFile]  # every item's own file, for uploading


def plan(
    script: Path,
    args: list[str],
    inputs: list[Path],
    includes: list[Path],
    project: dict[str, object] | None = None,
) -> BatchPlan:
    """Items: ARGS with each input appended, or put where ``{}`` stands. The project tree is
    shared by all items, without the inputs: each item gets only its own."""
    bundle = project_bundle(
        script, [a for a in args if a != "{}"], includes, batch_inputs=inputs, project=project
    )
    shared_args = iter(bundle.args)
    template = [a if a == "{}" else next(shared_args) for a in args]
    items = []
    for path, entry in zip(inputs, bundle.batch_files, strict=True):
        # the input as matched, never rewritten: the grid mounts it where it is
        item_args = [str(path) if a == "{}" else a for a in template]
        if "{}" not in args:
            item_args.append(str(path))
        items.append(
            schemas.BatchItemIn(
                input=str(path),
                args=item_args,
                files=[schemas.FileIn(path=entry.rel, digest=entry.digest, size=entry.size)],
            )
        )
    return BatchPlan(bundle, items, bundle.batch_files)


def folders(inputs: list[str]) -> dict[str, PurePosixPath]:
    """Each input's output folder: its stem, or its path without suffix where stems collide."""
    stems: dict[str, int] = {}
    for name in inputs:
        stem = PurePosixPath(name).stem
        stems[stem] = stems.get(stem, 0) + 1
    out = {}
    for name in inputs:
        pure = PurePosixPath(os.path.normpath(name).lstrip("./").replace("..", "_up"))
        out[name] = PurePosixPath(pure.stem) if stems[pure.stem] == 1 else pure.with_suffix("")
    return out


@dataclasses.dataclass
class Progress:
    total: int
    counts: dict[str, int]
    started: float
    durations: list[float]
    cost_micros: int = 0

    @property
    def done(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("succeeded", "failed", "cancelled"))

    def eta_s(self, parallel: int) -> float | None:
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        return mean * (self.total - self.done) / max(1, parallel)


def follow(
    client: Client,
    batch_id: str,
    on_change: Callable[[schemas.BatchItemPublic, Progress], None],
    on_finished: Callable[[schemas.BatchItemPublic], None],
    on_poll: Callable[[Progress], None] | None = None,
    first: schemas.BatchItemsPublic | None = None,
    inline_bytes: int = 0,
) -> tuple[schemas.BatchPublic, list[schemas.BatchItemPublic]]:
    """Poll the batch until every item ended; ``on_change`` for each state change,
    ``on_finished`` once for each item that ended (to download its outputs), ``on_poll``
    after each poll. The first poll fetches every item (or is ``first``, already fetched),
    later ones only what changed. ``inline_bytes``: outputs up to that size come with the
    pages (``Client.batch_items``)."""
    seen: dict[str, str] = {}
    items: dict[int, schemas.BatchItemPublic] = {}
    progress = Progress(total=0, counts={}, started=time.monotonic(), durations=[])
    changed_after = None
    first_page = True
    while True:
        asked = time.monotonic()
        # After the first page (every item, at once), the grid holds each answer until the
        # batch ends or POLL_S passed: the end is seen at once, not up to a poll later.
        page = first or client.batch_items(
            batch_id,
            changed_after,
            wait_s=0.0 if first_page else POLL_S,
            inline_bytes=inline_bytes,
        )
        first = None
        changed_after = page.next_changed_after
        progress.total, progress.counts = page.batch.total, page.batch.counts
        progress.cost_micros = page.batch.cost_micros
        for item in page.data:
            items[item.index] = item  # a retried item's new execution replaces the old one
            if seen.get(item.id) == item.state.value:
                continue
            seen[item.id] = item.state.value
            if item.state.terminal and item.started_at and item.finished_at:
                progress.durations.append((item.finished_at - item.started_at).total_seconds())
            on_change(item, progress)
            if item.state.terminal:
                on_finished(item)
        if on_poll is not None:
            on_poll(progress)
        if page.batch.done:
            return page.batch, sorted(items.values(), key=lambda i: i.index)
        if not first_page:  # an older grid answers at once: asked no more often than before
            time.sleep(max(0.0, POLL_S - (time.monotonic() - asked)))
        first_page = False


def fetch_outputs(
    client: Client,
    item: schemas.BatchItemPublic,
    root: Path,
    folder: PurePosixPath,
    on_skip: Callable[[schemas.ArtifactPublic, str], None] = lambda _artifact, _why: None,
) -> list[Path]:
    """Download an item's outputs into ``root/folder``, skipping files already there with the
    same content (a re-attached follow downloads exactly what is missing). An output this
    file system cannot hold is handed to ``on_skip`` with the reason; the others still come."""
    from rgrid.client.runs import make_dirs, same_content

    dest = root / folder
    make_dirs(dest, item.output_dirs)
    fetched = []
    for artifact in item.outputs:
        try:
            if not same_content(dest / artifact.path, artifact):
                fetched.append(client.download(item.id, artifact, dest))
        except OSError as exc:
            on_skip(artifact, exc.strerror or str(exc))
    return fetched


def staging_folder(folder: PurePosixPath) -> PurePosixPath:
    """Where a ``--flat`` item's outputs wait until the batch ends."""
    return PurePosixPath(FLAT_STAGING, str(folder).replace("/", "__"))


def flatten(root: Path) -> Iterator[Path]:
    """Move the staged per-item outputs of a ``--flat`` batch into ``root``: a name produced by
    one execution keeps it; a name produced by several becomes ``<stem>__<name>``."""
    staging = root / FLAT_STAGING
    if not staging.is_dir():
        return
    owners: dict[str, list[tuple[str, Path]]] = {}
    for item_dir in sorted(p for p in staging.iterdir() if p.is_dir()):
        for file in sorted(f for f in item_dir.rglob("*") if f.is_file()):
            owners.setdefault(file.relative_to(item_dir).as_posix(), []).append(
                (item_dir.name, file)
            )
    for name, produced in owners.items():
        for stem, file in produced:
            final = root / (name if len(produced) == 1 else f"{stem}__{name}")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, final)
            yield final
    for leftover in sorted(staging.rglob("*"), reverse=True):
        if leftover.is_dir():
            leftover.rmdir()
    staging.rmdir()


def current_inputs(
    client: Client, items: list[schemas.BatchItemPublic], states: set[str]
) -> dict[str, schemas.FileIn]:
    """The local files of the items about to be retried, uploaded if they changed (the user
    may have fixed them): keyed by the input as named at submission."""
    from rgrid.client.bundle import place_files
    from rgrid.client.runs import upload_bundle

    chosen = [Path(i.input) for i in items if i.state.value in states and Path(i.input).is_file()]
    if not chosen:
        return {}
    placed = place_files(chosen)
    upload_bundle(client, Bundle(script="", args=[], files=placed))
    return {
        str(path): schemas.FileIn(path=entry.rel, digest=entry.digest, size=entry.size)
        for path, entry in zip(chosen, placed, strict=True)
    }
