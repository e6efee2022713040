"""The client side of running a script: upload what is missing, follow logs, fetch outputs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

from rgrid import digests, errors, schemas
from rgrid.client import Client
from rgrid.client.bundle import Bundle, LocalFile
from rgrid.enums import EXIT_RGRID_FAILURE, ExecutionState, FailureClass

EXIT_CANCELLED = 130
RECONNECT_ATTEMPTS = 10
RECONNECT_BASE_S = 0.2
RECONNECT_MAX_S = 5.0

T = TypeVar("T")


# named tuples, not dataclasses: a run's start would import ``dataclasses`` (and ``inspect``)
# and make each class's methods
class UploadReport(NamedTuple):
    uploaded_files: int
    uploaded_bytes: int
    already_there: int
    #: the project tree was sent (the grid did not hold it)
    tree_sent: bool = False


def upload_bundle(client: Client, bundle: Bundle, extra: Sequence[LocalFile] = ()) -> UploadReport:
    """Send the blobs the grid lacks of the run's named files (the tree is sent, only if the
    grid asks for it, by ``submit_with_tree``); ``extra``: more files (a piped stdin)."""
    return upload_files(client, [*bundle.named_files, *extra])


def upload_files(client: Client, files: Sequence[LocalFile]) -> UploadReport:
    """Send only the blobs the grid lacks, each once."""
    by_hash = {f.digest: f for f in files}
    missing = client.missing_blobs(list(by_hash)) if by_hash else []
    return _send(client, by_hash, missing)


def _send(client: Client, by_hash: dict[str, LocalFile], missing: Sequence[str]) -> UploadReport:
    """Upload the contents ``missing`` of the files ``by_hash`` (by their digest)."""
    for sha in missing:
        entry = by_hash[sha]
        try:
            client.upload_blob(sha, Path(entry.source), entry.size)
        except errors.IntegrityError as exc:
            if not _changed(Path(entry.source), sha, entry.size):
                raise  # the file is as it was hashed: the bytes were damaged on the way
            # something wrote to the file after the CLI read it (a database in use)
            raise errors.UsageError(
                f"{entry.source} changed while rgrid was sending it",
                hint="run again once nothing writes to it, or leave it out of the project "
                "(.rgridignore)",
            ) from exc
    sent = sum(by_hash[sha].size for sha in missing)
    return UploadReport(len(missing), sent, len(by_hash) - len(missing))


def _changed(path: Path, digest: str, size: int) -> bool:
    """Whether the file no longer holds what was hashed (read again: only after a refusal)."""
    try:
        return path.stat().st_size != size or not digests.file_matches(path, digest)
    except OSError:
        return True  # gone or unreadable since: it changed


#: how a grid of an earlier version refuses a submission naming contents it lacks (no list)
_NOT_UPLOADED = "file contents not uploaded"


def submit_with_tree(
    client: Client,
    bundle: Bundle,
    submit: Callable[[], T],
    named: UploadReport,
    unsent: Sequence[LocalFile] = (),
) -> tuple[T, UploadReport]:
    """Submit naming the bundle's project tree and the contents of its files, then send only
    what the grid says it lacks and submit again: the tree (``TreeUnknown``: the first run of
    this tree, or its files expired) and, of ``unsent`` (named files not uploaded yet), the
    contents it lists (``BlobsUnknown``). A run whose files the grid holds is one request.
    Returns the answer and what was uploaded in all (``named``: the report of the named files
    uploaded before)."""
    by_hash = {f.digest: f for f in unsent}
    report = named._replace(already_there=named.already_there + len(by_hash))
    tree_sent = False
    while True:
        try:
            answer = submit()
        except errors.TreeUnknown:
            if tree_sent:
                raise
            tree_sent = True
            report = _plus(report, _send_tree(client, bundle))
        except errors.InvalidRequest as exc:
            if not by_hash:  # sent already: a content lost meanwhile is the grid's error
                raise
            if isinstance(exc, errors.BlobsUnknown):
                missing = [d for d in exc.details.get("missing", ()) if d in by_hash]
            elif exc.message.startswith(_NOT_UPLOADED):  # an earlier grid: ask which
                missing = client.missing_blobs(list(by_hash))
            else:
                raise
            sent = _send(client, by_hash, missing)
            by_hash = {}
            report = _plus(report, sent._replace(already_there=-sent.uploaded_files))
        else:
            break
    if not tree_sent:
        report = report._replace(
            already_there=report.already_there + len({f.digest for f in bundle.tree_files})
        )
    return answer, report._replace(tree_sent=tree_sent)


def _send_tree(client: Client, bundle: Bundle) -> UploadReport:
    """Upload what the grid lacks of the project tree's files, then the tree itself."""
    sent = upload_files(client, bundle.tree_files)
    assert bundle.tree_digest is not None
    client.put_tree(
        bundle.tree_digest,
        schemas.TreeIn(
            files=[
                schemas.FileIn(path=f.rel, digest=f.digest, size=f.size) for f in bundle.tree_files
            ],
            dirs=bundle.dirs,
        ),
    )
    return sent


def _plus(one: UploadReport, other: UploadReport) -> UploadReport:
    return one._replace(
        uploaded_files=one.uploaded_files + other.uploaded_files,
        uploaded_bytes=one.uploaded_bytes + other.uploaded_bytes,
        already_there=one.already_there + other.already_there,
    )


def follow(
    client: Client,
    execution_id: str,
    on_lines: Callable[[list[schemas.LogLinePublic]], None],
    *,
    after: int = 0,
    on_notice: Callable[[str], None] = lambda _message: None,
) -> schemas.LogsPublic:
    """Hand every log line after ``after`` to ``on_lines`` exactly once, live, until the end.

    A dropped stream is resumed after the last line handed over, with exponential backoff;
    after ``RECONNECT_ATTEMPTS`` failures in a row it gives up with ``ConnectionFailed``.
    """
    from rgrid.client.websocket import StreamClosed

    failures = 0
    while True:
        try:
            for page in client.stream_logs(execution_id, after=after):
                if failures:
                    on_notice(f"log stream back, resuming after line {after}")
                    failures = 0
                if page.data:
                    on_lines(page.data)
                after = page.last_seq
                if page.done:
                    return page
            raise StreamClosed("the grid closed the stream before the execution ended")
        except StreamClosed as exc:
            failures += 1
            if failures > RECONNECT_ATTEMPTS:
                raise errors.ConnectionFailed(
                    f"lost the log stream of {execution_id} ({exc})",
                    hint=f"`rgrid logs {execution_id} --follow` resumes after line {after}",
                ) from exc
            delay = min(RECONNECT_BASE_S * 2 ** (failures - 1), RECONNECT_MAX_S)
            on_notice(
                f"log stream lost ({exc}); reconnecting in {delay:.1f}s "
                f"({failures}/{RECONNECT_ATTEMPTS})"
            )
            time.sleep(delay)


class Downloads(NamedTuple):
    fetched: list[tuple[schemas.ArtifactPublic, Path]]
    #: already in place with the same content (e.g. a cache hit's outputs): not fetched again
    unchanged: list[tuple[schemas.ArtifactPublic, Path]]
    #: outputs this file system cannot hold under their name, and why (the others still came)
    skipped: list[tuple[schemas.ArtifactPublic, str]]
    #: empty directories the run created, made here
    dirs: list[Path]


def make_dirs(dest: Path, dirs: Sequence[str]) -> list[Path]:
    """Create the empty directories a run created under ``dest`` (unsafe names are refused
    with ``errors.UnsafePath``; one the file system cannot hold is skipped)."""
    from rgrid.paths import join_under

    made = []
    for rel in dirs:
        path = join_under(dest, rel)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue  # a file in the way: the user's own, never replaced
        made.append(path)
    return made


def download_outputs(
    client: Client,
    execution_id: str,
    dest: Path,
    only: list[str] | None = None,
    *,
    execution: schemas.ExecutionPublic | None = None,
    outputs: list[schemas.ArtifactPublic] | None = None,
) -> Downloads:
    """Fetch outputs into ``dest`` preserving their relative paths (all of them, or ``only``),
    except those already there with the same content, and (unless ``only``) create the empty
    directories the run created. ``execution`` and ``outputs``: the ended execution and its
    outputs when already known (a log stream's last page), else they are asked for.

    Unsafe names are refused (``errors.UnsafePath``) before anything is written. An output the
    local file system cannot hold (a name too long for it, a directory in the way) is skipped,
    with the reason, and the others are fetched.
    """
    artifacts = client.artifacts(execution_id, kind="output").data if outputs is None else outputs
    if only:
        unknown = sorted(set(only) - {a.path for a in artifacts})
        if unknown:
            raise errors.NotFound(
                f"no output named {', '.join(unknown)}", hint=f"`rgrid outputs {execution_id}`"
            )
        artifacts = [a for a in artifacts if a.path in only]
    from rgrid.paths import output_target

    def ended() -> schemas.ExecutionPublic:
        return client.get(execution_id) if execution is None else execution

    # outputs at a path an argument named outside the working directory come back there
    named = ended().named_outside if any(a.path[:1] == "/" for a in artifacts) else []
    targets = {}
    for artifact in artifacts:  # check every name first: refuse the whole set, write nothing
        try:
            targets[artifact.path] = output_target(dest, artifact.path, named)
        except errors.UnsafePath as exc:
            raise errors.UnsafePath(
                f"unsafe path {artifact.path!r}: refusing to download it outside {dest}",
                hint="nothing was written; report this output name to the grid's operator",
            ) from exc

    downloads = Downloads([], [], [], [])
    for artifact in artifacts:
        target = targets[artifact.path]
        try:
            if same_content(target, artifact):
                downloads.unchanged.append((artifact, target))
            else:
                downloads.fetched.append(
                    (artifact, client.download(execution_id, artifact, dest, target=target))
                )
        except OSError as exc:
            downloads.skipped.append((artifact, exc.strerror or str(exc)))
    if not only:
        downloads.dirs.extend(make_dirs(dest, ended().output_dirs))
    return downloads


def same_content(path: Path, artifact: schemas.ArtifactPublic) -> bool:
    """Whether ``path`` is a regular file holding exactly the artifact's bytes."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size != artifact.size:
        return False
    return digests.file_matches(path, artifact.digest)


def exit_code_for(execution: schemas.ExecutionPublic) -> int:
    """The exit code ``rgrid run``/``wait`` ends with (SPEC §4.8)."""
    if execution.state is ExecutionState.SUCCEEDED:
        return 0
    if execution.state is ExecutionState.CANCELLED:
        return EXIT_CANCELLED
    if (
        execution.failure_class
        in (FailureClass.SCRIPT_ERROR, FailureClass.TIMEOUT, FailureClass.OUT_OF_MEMORY)
        and execution.exit_code
    ):
        return execution.exit_code
    return EXIT_RGRID_FAILURE


def history(
    client: Client,
    execution_id: str,
    *,
    tail: int | None = None,
    streams: set[str] | None = None,
    attempt: int | None = None,
) -> tuple[list[schemas.LogLinePublic], int, bool]:
    """All stored lines (optionally only some streams, only the last ``tail``).

    Returns (lines, last sequence number read, whether the execution has ended).
    """
    lines: list[schemas.LogLinePublic] = []
    after = 0
    for page in _log_pages(client, execution_id, attempt=attempt):
        lines.extend(line for line in page.data if streams is None or line.stream.value in streams)
        if tail is not None:
            del lines[:-tail]
        if page.data:
            after = page.last_seq
    return lines, after, page.done


def ended_log(
    client: Client, execution_id: str
) -> tuple[list[schemas.LogLinePublic], schemas.LogsPublic]:
    """An ended execution's whole log, and its last page: that page carries the execution
    and its outputs (from an older grid: neither)."""
    lines: list[schemas.LogLinePublic] = []
    for page in _log_pages(client, execution_id, outputs=True):
        lines.extend(page.data)
    return lines, page


def _log_pages(
    client: Client, execution_id: str, *, attempt: int | None = None, outputs: bool = False
) -> Iterator[schemas.LogsPublic]:
    """The stored log's pages, up to the last stored line (the execution's last, once ended)."""
    after = 0
    while True:
        page = client.logs(
            execution_id, after=after, limit=10_000, attempt=attempt, outputs=outputs
        )
        yield page
        if not page.data:
            return
        after = page.last_seq
        if page.done:  # ended, and this page reached its last line: no need to ask again
            return
