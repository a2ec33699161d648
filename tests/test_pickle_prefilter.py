"""check-pickles' shortcuts change nothing it reports.

Most values are never walked: a pre-filter (``pickle_refs.may_name``, and the same test
inside the Redis script) passes a value that holds no STACK_GLOBAL, no EXT1/2/4 and no
``c`` or ``i`` with two newlines after it as naming nothing. And for a census, the
entries that name something are summed by the census label the script gives each. Here
the pre-filter's fast path is held to the full walk (in Python and in the script), and
the sums to ``census_label`` key by key.
"""

from __future__ import annotations

import collections
import json
import pickle
from pathlib import Path

import pytest

from cachectl.backends import redis_pickles
from cachectl.backends.statistics import census_label
from cachectl.codec import pickle_names, pickle_refs
from cachectl.codec.limits import DecodeLimits
from tests.conftest import RedisTarget, run
from tests.test_check_pickles import Sample, ordinary_values
from tests.test_hostile_pickles import CASES
from tests.test_stats_by_function import EDGE_NAMES

PATIENT = DecodeLimits(max_seconds=60)


def corpus(tmp_path: Path) -> dict[str, bytes]:
    """The hostile pickles, ordinary ones of every protocol, and values built to sit on
    the pre-filter's edges: text with ``c`` and newlines, 0x93 inside bytes, GLOBAL's
    two lines with nothing, or one line, after the ``c``."""
    values = {name: case.build(tmp_path) for name, case in CASES.items()}
    values.update(ordinary_values())
    values.update(
        {
            "global-empty-lines": b"c\n\n)\x81.",
            "global-one-line": b"cmodule\n.",
            "inst-after-text": b"\x80\x02X\x02\x00\x00\x00\n\ni__main__\nSample\n(.",
            "text-c-then-one-newline": pickle.dumps("c\n" + "x" * 300, 5),
            "text-i-before-two-newlines": pickle.dumps("i\n\n", 2),
            "newlines-only": pickle.dumps("\n\n\n", 5),
        }
    )
    return values


def test_the_prefilter_passes_plain_text_and_walks_what_may_name(tmp_path: Path) -> None:
    values = corpus(tmp_path)
    for protocol in range(1, pickle.HIGHEST_PROTOCOL + 1):
        assert not pickle_refs.may_name(values[f"text-newlines-p{protocol}"]), protocol
        assert pickle_refs.may_name(values[f"text-c-newlines-p{protocol}"]), protocol
        assert pickle_refs.may_name(values[f"bytes-93-p{protocol}"]), protocol
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle_refs.may_name(values[f"class-p{protocol}"]), protocol
        assert pickle_refs.may_name(values[f"instance-p{protocol}"]), protocol
    assert not pickle_refs.may_name(values["text-c-then-one-newline"])
    assert pickle_refs.references(values["global-empty-lines"]).names == {".": 5}


def test_the_prefilter_never_hides_a_name_from_the_walk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = corpus(tmp_path)
    filtered = {name: pickle_refs.references(data, PATIENT) for name, data in values.items()}
    monkeypatch.setattr(pickle_refs, "may_name", lambda data: True)
    for name, data in values.items():
        walked = pickle_refs.references(data, PATIENT)
        assert filtered[name].names == walked.names, name
        if filtered[name] != walked:  # only a value the filter passed, naming nothing
            assert filtered[name] == pickle_refs.NONE and not walked.names, name


def _names_by_script(redis_target: RedisTarget) -> dict[bytes, dict[str, int]]:
    """Each key's names as the script reports them (none: counted only)."""
    walked = redis_pickles.walked_entries(redis_target.client, "app_*", 4, 1 << 24)
    assert walked is not None
    return {e.name: e.refs.names for e in walked if e.name and e.refs is not None}


def test_the_scripts_prefilter_agrees_with_its_full_walk(
    redis_target: RedisTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = corpus(tmp_path)
    pipe = redis_target.client.pipeline()
    for name, data in values.items():
        pipe.set(f"app_{name}", b"!" + data)
    pipe.execute()
    read: list[int] = []
    send = pickle_names.NameReader.send

    def counted(reader: pickle_names.NameReader, records: bytes, skip: int) -> None:
        read.append(len(records))
        send(reader, records, skip)

    monkeypatch.setattr(pickle_names.NameReader, "send", counted)
    filtered = _names_by_script(redis_target)
    script = redis_pickles.PICKLES_SCRIPT
    full = script.replace("elseif not may_name(data) then", "elseif false then")
    assert full != script
    monkeypatch.setattr(redis_pickles, "PICKLES_SCRIPT", full)
    monkeypatch.setattr(redis_pickles, "_SHA", "0" * 40)  # not cached: sent as text
    read_filtered, read = sum(read), []
    walked = _names_by_script(redis_target)
    assert sum(read) > read_filtered  # without the pre-filter, more values were sent
    for name, data in values.items():
        key = name.encode()
        if len(data) + 1 > redis_pickles.SCRIPT_VALUE_BYTES:
            continue  # read and walked on the client
        expected = pickle_refs.references(data, PATIENT).names
        assert filtered.get(key, {}) == walked.get(key, {}) == expected, name


def test_the_scripts_sums_are_the_census_labels_key_by_key(redis_target: RedisTarget) -> None:
    """Keys of every census shape, half naming a class, summed by the script's labels:
    each sum is the entries ``census_label`` puts under that label, naming the same."""
    client = redis_target.client
    naming, plain = b"!" + pickle.dumps(Sample(1), 5), b"!" + pickle.dumps({"a": 1}, 5)
    sample = f"{Sample.__module__}.Sample"
    expected: collections.Counter[tuple[bytes, str]] = collections.Counter()
    versions = set()
    pipe = client.pipeline(transaction=False)
    for number, name in enumerate(sorted(set(EDGE_NAMES))):
        value = naming if number % 2 == 0 else plain
        pipe.set(b"app_" + name, value)
        if (b"app_" + name).endswith(b"_memver"):
            versions.add(name)  # a short value of a version key's name: the client reads it
        elif value is naming:
            expected[(census_label(name), "walked")] += 1
    pipe.execute()
    walked = redis_pickles.walked_entries(client, "app_*", 4, 1 << 24, True)
    assert walked is not None
    summed: collections.Counter[tuple[bytes, str]] = collections.Counter()
    seen_versions, plain_entries = set(), 0
    for entry in walked:
        if entry.label is not None:
            assert entry.refs is not None and set(entry.refs.names) == {sample}
            assert entry.size == entry.entries * len(naming)
            summed[(entry.label, "walked")] += entry.entries
        elif entry.name:
            seen_versions.add(entry.name)
        else:
            plain_entries += entry.entries
    assert summed == expected
    assert seen_versions == versions
    assert sum(expected.values()) + len(versions) + plain_entries == len(set(EDGE_NAMES))


def test_a_long_version_key_naming_a_class_is_counted_not_fatal(
    redis_target: RedisTarget,
) -> None:
    """A key named as a memoize version key whose value is long and names a class is
    walked inside the server (it is no version); the census counts it and goes on."""
    client = redis_target.client
    client.set("app_shop.views.f_memver", b"!" + pickle.dumps([Sample(n) for n in range(40)], 5))
    client.set("app_shop.views.g_memver", b"!" + pickle.dumps("abc123", 5))
    result = run("--url", redis_target.url, "--key-prefix", "app_", "--json", "check-pickles")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["entries"] == 2
