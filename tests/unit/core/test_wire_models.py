"""Wire models are plain classes with a keyword-only ``__init__`` until the server (or
``built``) makes them dataclasses: a CLI command loads, sends and shows them without importing
``dataclasses`` at all, and a built model is the dataclass it always was."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading

import pytest

from rgrid import schemas

#: run in a fresh interpreter: load, make, dump and replace models; was anything built, or
#: ``dataclasses`` imported?
FRESH = """
import json, sys
from rgrid import schemas
wire = {"data": [{"seq": 1, "attempt": 1, "stream": "stdout", "ts": "2026-01-02T00:00:00+00:00",
    "text": "x"}], "last_seq": 1, "state": "running", "exit_code": None, "done": False,
    "execution": None, "outputs": None}
page = schemas.load(schemas.LogsPublic, wire)
spec = schemas.ExecutionCreate(script="a.py", idempotency_key="k")
changed = schemas.replace(spec, script="b.py")
print(json.dumps({
    "built": sorted(c.__name__ for c in schemas._WIRE if "__dataclass_fields__" in c.__dict__),
    "dataclasses": "dataclasses" in sys.modules, "inspect": "inspect" in sys.modules,
    "all": len(schemas._WIRE), "same": schemas.dump(page) == wire,
    "stream": type(page.data[0].stream).__name__,
    "spec": schemas.dump(spec), "changed": schemas.dump(changed),
}))
"""


def test_loading_making_and_dumping_build_nothing_and_import_no_dataclasses() -> None:
    done = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, check=True)
    seen = json.loads(done.stdout)
    assert seen["built"] == []
    assert not seen["dataclasses"] and not seen["inspect"]
    assert seen["all"] > 40
    assert seen["same"] and seen["stream"] == "Stream"  # nested, converted, and back
    assert seen["spec"]["script"] == "a.py" and seen["spec"]["files"] == []
    assert seen["changed"] == {**seen["spec"], "script": "b.py"}


def test_a_plain_model_dumps_as_its_built_dataclass_does() -> None:
    """Made before and after ``build_all``, the same fields in the same order."""
    before = schemas.ExecutionCreate(script="a.py", args=["x"], metadata={"k": "v"})
    schemas.build_all()
    after = schemas.ExecutionCreate(script="a.py", args=["x"], metadata={"k": "v"})
    assert list(schemas.dump(before)) == [f.name for f in dataclasses.fields(after)]
    assert schemas.dump(before) == schemas.dump(after) == dataclasses.asdict(after)


def test_every_model_builds_to_a_keyword_only_dataclass() -> None:
    schemas.build_all()
    for cls in schemas._WIRE:
        assert dataclasses.is_dataclass(cls), cls
        assert cls.__init__ is not schemas._init, cls
        assert all(f.kw_only for f in dataclasses.fields(cls)), cls
    schemas.build_all()  # again: nothing changes
    assert len({cls.__init__ for cls in schemas._WIRE}) == len(schemas._WIRE)


@pytest.mark.parametrize("build", [False, True])
def test_a_model_takes_its_fields_and_defaults_built_or_not(build: bool) -> None:
    @schemas._wire
    class Probe:
        name: str
        tags: list[str] = schemas.fresh(list)
        count: int = 0

    assert "__dataclass_fields__" not in Probe.__dict__
    if build:
        schemas.built(Probe)
        assert dataclasses.is_dataclass(Probe)
    first = Probe(name="a")
    assert (first.name, first.tags, first.count) == ("a", [], 0)
    second = Probe(name="b", tags=["x"], count=2)
    assert (second.name, second.tags, second.count) == ("b", ["x"], 2)
    assert first.tags is not Probe(name="c").tags  # each its own list
    with pytest.raises(TypeError):
        Probe("positional")  # type: ignore[misc]  # keyword-only, as before
    with pytest.raises(TypeError):
        Probe(nmae="typo")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Probe(name="a", nmae="typo")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Probe(tags=[])  # type: ignore[call-arg]  # name is required
    assert schemas.replace(second, count=5).count == 5 and second.count == 2
    schemas._WIRE.discard(Probe)


def test_a_model_built_by_many_threads_while_others_make_it_is_whole() -> None:
    @schemas._wire
    class Raced:
        value: int
        tags: list[str] = schemas.fresh(list)

    start = threading.Barrier(8)
    made: list[Raced] = []

    def make(value: int) -> None:
        start.wait()
        if value % 2:
            schemas.built(Raced)
        made.append(Raced(value=value))

    threads = [threading.Thread(target=make, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.value for r in made) == list(range(8))
    assert all(r.tags == [] for r in made) and len({id(r.tags) for r in made}) == 8
    assert dataclasses.is_dataclass(Raced) and Raced.__init__ is not schemas._init
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
