"""The result cache's key (SPEC §12): what makes two runs the same, and what differs when not.

The key covers the script's bytes, the local modules and inputs (path and content hash), the
arguments, the environment variables (names and values), the normalised dependency list, the
runtime, whether the script has network access (a run that succeeded online says nothing
of one without network) and the content of a piped stdin: a non-empty one only, since an
empty stdin and none (a terminal's) both give the script end-of-file at once. The timeout and memory limit are not in it: they bound a run, and a
run that succeeded within its limits has the same result. It is an HMAC under a key derived from the grid's secret, so neither the key nor
the stored parts let anyone guess an ``--env`` value offline.

A run whose file opens were observed (``domain.InputReads``) is reused more widely: by a run
with the same key *but for its files* (``CacheKey.base``) whose files differ only in ones it
never opened, or only by its own outputs having come back (see ``mismatch``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from rgrid import digests, domain
from rgrid.domain import ExecutionState
from rgrid.services import Grid
from rgrid.store import executions as repo

#: the purpose the cache's HMAC key is derived for, from the grid's secret
KEY_PURPOSE = "rgrid result cache v1"

#: how a part of the key is named when a miss is explained, in the order they are checked
#: (files last: with the project tree travelling they differ most often)
PART_NAMES = {
    "script": "the script",
    "dependencies": "the dependencies",
    "runtime": "the runtime",
    "network": "the network setting",
    "stdin": "stdin",
    "time_zone": "the time zone",
    "locale": "the locale",
    "terminal": "the terminal",
    "args": "the arguments",
    "env": "an environment variable",
    "modules": "a local module",
    "inputs": "an input",
    "tree": "the project tree",
}
#: the parts holding files (path → digest); the rest is the key's base
FILE_PARTS = ("modules", "inputs")
#: the part naming the project tree by its digest: its files, listed, count as FILE_PARTS
TREE_PART = "tree"
#: how many observed runs with the same base are checked per lookup, newest first
CANDIDATES = 16


@dataclasses.dataclass(frozen=True)
class CacheKey:
    digest: str
    #: per part: hashes (never plain values of the environment), to explain a miss
    parts: dict[str, Any]
    #: the digest of every part but the files
    base: str = ""


def cache_key(
    secret: bytes,
    *,
    script: str,
    args: Sequence[str],
    files: Sequence[domain.FileRef],
    env: Mapping[str, str],
    requirements: Sequence[str],
    runtime: str,
    network: bool,
    stdin: str | None = None,
    tree: str | None = None,
    surroundings: Mapping[str, Any] | None = None,
) -> CacheKey:
    """The key of a run. Files are the script, the modules beside it and the inputs; a ``.py``
    file that no argument names counts as a module, anything else as an input. ``stdin``: the
    digest of a non-empty piped stdin (a part only then, so keys without one are as before);
    ``tree``: the digest of the project tree the run carries (its files are not listed in the
    key: ``with_tree`` lists them where two runs' trees differ)."""
    parts: dict[str, Any] = {
        "script": next((f.digest for f in files if f.path == script), ""),
        **file_parts(files, script, args),
        "dependencies": sorted(requirements),
        "runtime": runtime,
        "network": network,
        "args": [script, *args],
        "env": {name: _mac(secret, f"{name}={value}") for name, value in sorted(env.items())},
    }
    if stdin is not None:
        parts["stdin"] = stdin
    if tree is not None:
        parts[TREE_PART] = tree
    # A script's output may depend on its time zone and locale (a date, a number's format):
    # they are part of the key whenever the user has any, so a run never reuses one made for
    # another zone; runs without any keep the keys they had before these were sent
    if surroundings:
        if surroundings.get("time_zone") is not None:
            parts["time_zone"] = surroundings["time_zone"]
        if surroundings.get("locale"):
            parts["locale"] = dict(surroundings["locale"])
        if surroundings.get("terminal"):  # colours, widths, isatty(): output differs on one
            parts["terminal"] = dict(surroundings["terminal"])
    return key_of(secret, parts)


def file_parts(
    files: Sequence[domain.FileRef], script: str, args: Sequence[str]
) -> dict[str, dict[str, str]]:
    """The files of a run as key parts: a ``.py`` file that no argument names is a module."""
    named = set(args)
    parts: dict[str, dict[str, str]] = {"modules": {}, "inputs": {}}
    for ref in files:
        if ref.path != script:
            module = ref.path.endswith(".py") and ref.path not in named
            parts["modules" if module else "inputs"][ref.path] = ref.digest
    return parts


def with_tree(parts: Mapping[str, Any], tree: domain.Tree) -> dict[str, Any]:
    """Key parts with the tree's files listed among the run's own, as if all were named."""
    script, args = parts["args"][0], parts["args"][1:]
    listed = file_parts(tree.files, script, args)
    expanded = {name: value for name, value in parts.items() if name != TREE_PART}
    for part in FILE_PARTS:
        expanded[part] = {**listed[part], **parts.get(part, {})}
    return expanded


def key_of(secret: bytes, parts: dict[str, Any]) -> CacheKey:
    """The key with these parts."""
    base = {name: value for name, value in parts.items() if name not in (*FILE_PARTS, TREE_PART)}
    return CacheKey(
        _mac(secret, json.dumps(parts, sort_keys=True)),
        parts,
        _mac(secret, json.dumps(base, sort_keys=True)),
    )


Keyer = Callable[[Sequence[str], Sequence[domain.FileRef], "domain.Tree | None"], CacheKey]


def keyer_for(
    grid: Grid,
    *,
    script: str,
    env: Mapping[str, str],
    requirements: Sequence[str],
    preset: str | None,
    python: str | None,
    network: bool,
    stdin: domain.FileRef | None = None,
    surroundings: Mapping[str, Any] | None = None,
) -> Keyer:
    """The cache key of a submission's runs (one, or a batch's items), from each run's
    arguments and files; everything else is the submission's."""
    secret = grid.secrets.derive(KEY_PURPOSE)
    runtime = f"{preset or ''}/{python or grid.default_python}"

    def key(
        args: Sequence[str], files: Sequence[domain.FileRef], tree: domain.Tree | None
    ) -> CacheKey:
        return cache_key(
            secret,
            script=script,
            args=args,
            files=files,
            env=env,
            requirements=requirements,
            runtime=runtime,
            network=network,
            stdin=stdin.digest if stdin is not None and stdin.size else None,
            tree=tree.digest if tree is not None else None,
            surroundings=surroundings,
        )

    return key


def explain_miss(now: Mapping[str, Any], before: Mapping[str, Any]) -> str | None:
    """Which part of the key differs from an earlier run's (``None``: nothing differs)."""
    script_now, script_then = str(now.get("script")), str(before.get("script"))
    if digests.is_digest(script_now) and digests.is_digest(script_then):
        now_by, then_by = digests.algorithm_of(script_now), digests.algorithm_of(script_then)
        if now_by != then_by:
            return f"that run's files were hashed with {then_by}, these with {now_by}"
    for part, label in PART_NAMES.items():
        mine, theirs = now.get(part), before.get(part)
        if mine == theirs:
            continue
        if isinstance(mine, dict) and isinstance(theirs, dict):
            name = min(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
            if name not in theirs:
                return f"{label} was added: {name}"
            if name not in mine:
                return f"{label} was removed: {name}"
            return f"{label} changed: {name}"
        return f"{label} changed"
    return None


def rekeyed(secret: bytes, parts: Mapping[str, Any], files: Mapping[str, str]) -> CacheKey:
    """An earlier key with some files' contents replaced (``files``: path → digest)."""
    new = json.loads(json.dumps(parts))
    for path, sha in files.items():
        for part in ("modules", "inputs"):
            if path in new.get(part, {}):
                new[part][path] = sha
    return key_of(secret, new)


def reused(source: domain.Execution) -> domain.Reused:
    """How a new execution answered by ``source`` is finished: as the run it reuses (a hit
    of a hit names the run that really ran)."""
    return domain.Reused(
        source_id=source.cached_from or source.id,
        last_seq=source.last_seq,
        packages=tuple(source.packages or ()),
        python_version=source.python_version,
        output_dirs=tuple(source.output_dirs or ()),
        network_used=source.network_used,
    )


async def comparable(
    grid: Grid,
    session: AsyncSession,
    account_id: str,
    now: Mapping[str, Any],
    then: Mapping[str, Any],
) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """Two runs' key parts made comparable file by file: where their trees differ (or hold
    bytecode, which changes what counts as read) each tree's files are listed among the
    run's own. None: a tree is no longer stored, so the runs cannot be compared."""
    mine, theirs = now.get(TREE_PART), then.get(TREE_PART)
    if mine == theirs and mine is None:
        return now, then
    listed: list[Mapping[str, Any]] = []
    for parts, digest in ((now, mine), (then, theirs)):
        tree = await grid.trees.get(session, account_id, digest) if digest else None
        if digest is not None and tree is None:
            return None
        if mine == theirs and tree is not None and not tree.has_bytecode:
            return now, then  # the same files on both sides: only the named ones can differ
        listed.append(with_tree(parts, tree) if tree is not None else parts)
    return listed[0], listed[1]


async def miss_note(
    grid: Grid,
    session: AsyncSession,
    account_id: str,
    script: str,
    key: CacheKey,
    why: str | None,
) -> str:
    """Why a run is not served from the cache (for ``rgrid status``): ``why`` the lookup gave,
    else against this account's latest run of the same script. Called once the lookup found
    no usable result."""
    if why is not None:
        return f"miss: {why}"
    earlier = await repo.latest_of_script(session, account_id, script)
    if earlier is None or earlier.cache_parts is None:
        return f"miss: no earlier run of {script}"
    both = await comparable(grid, session, account_id, key.parts, earlier.cache_parts)
    reason = explain_miss(*both) if both else explain_miss(key.parts, earlier.cache_parts)
    if reason is not None:
        return f"miss: {reason} (since {earlier.id})"
    if earlier.state != ExecutionState.SUCCEEDED.value:
        return f"miss: the same run {earlier.id} {earlier.state} (only succeeded runs are reused)"
    # the same key, succeeded, yet not found usable: its outputs are gone
    return f"miss: the outputs of {earlier.id} are no longer kept (expired or deleted)"


def _mac(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()
