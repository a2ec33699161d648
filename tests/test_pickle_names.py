"""check-pickles' fast name reader (``codec.pickle_names``): pickle's C unpickler in a
worker process, every name answered by an inert stand-in. It must name what the walk
(``pickle_refs``) names, run nothing a pickle asks for, and survive a worker that runs out
of memory, hangs or dies, by walking those values itself.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import signal
import time
from pathlib import Path

import pytest

from cachectl.codec import pickle_names, pickle_refs
from cachectl.codec.limits import DecodeLimits
from tests.test_check_pickles import Sample, ordinary_values
from tests.test_hostile_pickles import CASES

PATIENT = DecodeLimits(max_seconds=60)
ROLES = pickle_refs.CALLED | pickle_refs.INSTANTIATED


def _calls_by_inst_or_obj(data: bytes) -> bool:
    """Whether INST or OBJ (Python 2's opcodes) appear, where a call with arguments is
    noted as called, not instantiated (the one difference the module keeps)."""
    try:
        return any(op.name in ("INST", "OBJ") for op, _, _ in pickletools.genops(data))
    except Exception:
        return True


def test_the_reader_names_what_the_walk_names_and_runs_nothing(tmp_path: Path) -> None:
    values = {name: case.build(tmp_path) for name, case in CASES.items()}
    values.update(ordinary_values())
    names = list(values)
    started = time.monotonic()
    with pickle_names.NameReader(PATIENT) as reader:
        found = reader.names([values[name] for name in names])
        fast = sum(pickle_names.fast_path_takes(values[name]) for name in names)
    assert time.monotonic() - started < 30
    assert not (tmp_path / "pwned").exists()
    assert "CACHECTL_HOSTILE_PICKLE_RAN" not in os.environ
    assert fast > 40  # the C unpickler was asked, not only the walk
    for name, refs in zip(names, found):
        expected = pickle_refs.references(values[name], PATIENT)
        assert set(refs.names) == set(expected.names), name
        assert (refs.stopped is None) == (expected.stopped is None), name
        data = values[name]
        if not pickle_names.fast_path_takes(data) or not _calls_by_inst_or_obj(data):
            assert refs.names == expected.names, name
        else:
            for path, roles in expected.names.items():
                assert refs.names[path] & ~ROLES == roles & ~ROLES, name


def test_a_model_instance_is_named_with_how_it_is_used() -> None:
    data = pickle.dumps([Sample(1), Sample(2)], 5)
    assert pickle_names.fast_path_takes(data)
    with pickle_names.NameReader() as reader:
        (refs,) = reader.names([data])
    sample = f"{Sample.__module__}.Sample"
    assert refs.names == {sample: pickle_refs.REFERENCED | pickle_refs.INSTANTIATED}
    assert refs.stopped is None


def _memo_index(index: int) -> bytes:
    """A protocol 4 pickle that stores None at memo ``index`` (LONG_BINPUT): the C
    unpickler grows its memo to twice the index, 16 GiB for the largest."""
    return b"\x80\x04N" + b"r" + index.to_bytes(4, "little") + b"\x8c\x03abc\x8c\x01x\x93."


def test_a_memo_bomb_fails_in_the_worker_and_is_walked_instead() -> None:
    bombs = [_memo_index(2**31 - 1), _memo_index(2**26)]
    started = time.monotonic()
    with pickle_names.NameReader() as reader:
        found = reader.names(bombs)
        worker = reader._worker
        assert worker is not None and worker.poll() is None  # the worker lived on
        assert reader.names([pickle.dumps(Sample(1), 5)])[0].names
    assert time.monotonic() - started < 10
    for refs, bomb in zip(found, bombs):
        assert refs == pickle_refs.references(bomb)
        assert refs.names == {"abc.x": pickle_refs.REFERENCED}


def test_a_worker_that_does_not_answer_in_time_is_killed_and_its_batch_walked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = [pickle.dumps([Sample(n) for n in range(50)], 5)] * 2000
    monkeypatch.setattr(pickle_names, "BATCH_SECONDS", 0.0)
    monkeypatch.setattr(pickle_names, "SECONDS_PER_KIB", 1e-7)
    with pickle_names.NameReader() as reader:
        found = reader.names(values)
        assert reader._restarts == 1 and reader._worker is None
    assert all(refs == pickle_refs.references(values[0]) for refs in found)


def test_a_worker_killed_from_outside_loses_nothing() -> None:
    values = [pickle.dumps(Sample(n), 5) for n in range(300)]
    expected = [pickle_refs.references(value) for value in values]
    with pickle_names.NameReader() as reader:
        assert reader.names(values) == expected
        worker = reader._worker
        assert worker is not None
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        assert reader.names(values) == expected  # walked here, then a new worker
        assert reader.names(values) == expected
        assert reader._worker is not None and reader._worker.pid != worker.pid


def test_without_an_interpreter_to_start_the_walk_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pickle_names.sys, "executable", "")
    value = pickle.dumps(Sample(1), 5)
    with pickle_names.NameReader() as reader:
        assert reader.names([value]) == [pickle_refs.references(value)]
        assert reader._worker is None


def test_only_protocol_3_and_later_declared_once_take_the_fast_path() -> None:
    assert not pickle_names.fast_path_takes(pickle.dumps(Sample(1), 2))
    assert not pickle_names.fast_path_takes(pickle.dumps(Sample(1), 0))
    assert pickle_names.fast_path_takes(pickle.dumps(Sample(1), 3))
    twice = pickle.dumps(Sample(1), 4)[:-1] + b"0\x80\x02."  # a second PROTO
    assert not pickle_names.fast_path_takes(twice)
    assert not pickle_names.fast_path_takes(b"\x80\x05" + b"N" * pickle_names.FAST_VALUE_BYTES)
