"""Wire models become dataclasses on first use: what a command never touches costs it nothing
at start, and a built model is the dataclass it always was."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading

import pytest

from rgrid import schemas

#: run in a fresh interpreter: which models are built after importing, then after loading one
FRESH = """
import json
from rgrid import schemas
def built():
    return sorted(c.__name__ for c in schemas._WIRE if "__dataclass_fields__" in c.__dict__)
after_import = built()
wire = {"data": [{"seq": 1, "attempt": 1, "stream": "stdout", "ts": "2026-01-02T00:00:00+00:00",
    "text": "x"}], "last_seq": 1, "state": "running", "exit_code": None, "done": False}
page = schemas.load(schemas.LogsPublic, wire)
print(json.dumps({"import": after_import, "load": built(), "all": len(schemas._WIRE),
    "same": schemas.dump(page) == wire, "stream": type(page.data[0].stream).__name__}))
"""


def test_importing_builds_nothing_and_loading_builds_only_what_it_meets() -> None:
    done = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, check=True)
    seen = json.loads(done.stdout)
    assert seen["import"] == []
    assert seen["load"] == ["LogLinePublic", "LogsPublic"]
    assert seen["all"] > 40
    assert seen["same"] and seen["stream"] == "Stream"  # nested, converted, and back


def test_every_model_builds_to_a_keyword_only_dataclass() -> None:
    schemas.build_all()
    for cls in schemas._WIRE:
        assert dataclasses.is_dataclass(cls), cls
        assert cls.__init__ is not schemas._build_then_init, cls
        assert all(f.kw_only for f in dataclasses.fields(cls)), cls
    schemas.build_all()  # again: nothing changes
    assert len({cls.__init__ for cls in schemas._WIRE}) == len(schemas._WIRE)


def test_a_model_built_on_first_use_takes_its_fields_and_defaults() -> None:
    @schemas._wire
    class Probe:
        name: str
        tags: list[str] = dataclasses.field(default_factory=list)
        count: int = 0

    assert "__dataclass_fields__" not in Probe.__dict__
    first = Probe(name="a")
    assert (first.name, first.tags, first.count) == ("a", [], 0)
    second = Probe(name="b", tags=["x"], count=2)
    assert (second.name, second.tags, second.count) == ("b", ["x"], 2)
    assert first.tags is not Probe(name="c").tags  # each its own list
    with pytest.raises(TypeError):
        Probe("positional")  # type: ignore[misc]  # keyword-only, as before
    with pytest.raises(TypeError):
        Probe(nmae="typo")  # type: ignore[call-arg]
    schemas._WIRE.discard(Probe)


def test_a_model_first_used_by_many_threads_at_once_is_built_once() -> None:
    @schemas._wire
    class Raced:
        value: int

    start = threading.Barrier(8)
    made: list[Raced] = []

    def make(value: int) -> None:
        start.wait()
        made.append(Raced(value=value))

    threads = [threading.Thread(target=make, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.value for r in made) == list(range(8))
    assert dataclasses.is_dataclass(Raced) and Raced.__init__ is not schemas._build_then_init
    schemas._WIRE.discard(Raced)


def test_a_model_cannot_extend_another() -> None:
    @schemas._wire
    class Base:
        a: int

    with pytest.raises(TypeError, match="cannot extend"):

        @schemas._wire
        class Derived(Base):
            b: int

    schemas._WIRE.discard(Base)


#: an instance pickled here, unpickled and dumped where its class was never built
UNPICKLED = """
import pickle, sys, json
from rgrid import schemas
value = pickle.loads(bytes.fromhex(sys.argv[1]))
assert "__dataclass_fields__" not in type(value).__dict__
print(json.dumps(schemas.dump(value)))
"""


def test_an_instance_unpickled_where_its_model_was_never_built_still_dumps() -> None:
    import pickle

    stored = schemas.BlobStored(digest="blake3:ab", size=3)
    done = subprocess.run(
        [sys.executable, "-c", UNPICKLED, pickle.dumps(stored).hex()],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == {"digest": "blake3:ab", "size": 3}
