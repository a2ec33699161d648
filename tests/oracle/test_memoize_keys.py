"""Oracle: cachectl's memoize keys equal the keys the installed Flask-Caching forms.

Runs against whichever Flask-Caching is installed: the main environment has
2.5, and the test command runs this directory again in an environment with 2.4
(legacy). Argument values come from hypothesis.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachectl import keys
from cachectl.app.functions import locate_function
from cachectl.config.generations import resolve_generation
from tests.oracle import corpus

GENERATION = resolve_generation(None).name
DEFAULT_HASH = resolve_generation(None).hash_method

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    lambda inner: st.tuples(inner, inner) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)


def oracle_key(decorated: Any, *args: Any, **kwargs: Any) -> str:
    """The key the real library forms (it creates missing version keys as it goes)."""
    with corpus.app.app_context():
        return decorated.make_cache_key(decorated.uncached, *args, **kwargs)


def stored_versions(fname: str, instance_fname: str | None) -> str:
    with corpus.app.app_context():
        versions = [corpus.cache.get(keys.version_key(fname))]
        if instance_fname is not None:
            versions.append(corpus.cache.get(keys.version_key(instance_fname)))
    assert all(versions), f"no version stored under {fname!r} / {instance_fname!r}"
    return "".join(versions)


def cachectl_key(
    path: str,
    args: tuple,
    kwargs: dict,
    *,
    instance_id: str | None = None,
    make_name: Any = None,
    ignore: tuple[str, ...] = (),
    hash_method: Any = None,
    source_check: bool = False,
) -> str:
    """The key cachectl derives from the function's dotted name alone."""
    target = locate_function(path)
    fname = keys.function_namespace(target.module, target.qualname, GENERATION)
    first_id = instance_id
    if target.is_classmethod:
        first_id = target.class_id()
    instance_fname = None
    if target.is_method and "self" not in ignore:
        instance_fname = keys.instance_namespace(
            target.module, target.qualname, instance_id, GENERATION
        )
    name = make_name(fname) if make_name else fname
    return keys.memoize_entry_key(
        name,
        keys.memoize_key_arguments(target.signature, args, kwargs, GENERATION, ignore, first_id),
        stored_versions(fname, instance_fname),
        hash_method or DEFAULT_HASH,
        target.source() if source_check else None,
    )


def split_call(draw: Any, names: list[str], var_args: bool, var_kwargs: bool) -> tuple[tuple, dict]:
    """A call: some parameters positionally, some by keyword, some left out."""
    count = draw(st.integers(0, len(names)))
    args = tuple(draw(values) for _ in names[:count])
    kwargs = {name: draw(values) for name in names[count:] if draw(st.booleans())}
    if var_args and count == len(names):
        args += tuple(draw(st.lists(values, max_size=3)))
    if var_kwargs:
        extra = draw(
            st.dictionaries(st.sampled_from(["zeta", "alpha", "mid", "k2"]), values, max_size=3)
        )
        kwargs.update({k: v for k, v in extra.items() if k not in names})
    return args, kwargs


FUNCTIONS = {
    "tests.oracle.corpus.positional": {},
    "tests.oracle.corpus.with_defaults": {},
    "tests.oracle.corpus.var_positional": {},
    "tests.oracle.corpus.var_keyword": {},
    "tests.oracle.corpus.renamed": {"make_name": corpus.upper_name},
    "tests.oracle.corpus.ignoring": {"ignore": ("session",)},
    "tests.oracle.corpus.source_checked": {"source_check": True},
    "tests.oracle.corpus:nested": {},
    "tests.oracle.corpus.grüße_straße": {},
    "tests.oracle.corpus.Person.helper": {},
}
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("path", sorted(FUNCTIONS))
@FAST
@given(data=st.data())
def test_function_keys(path: str, data: st.DataObject) -> None:
    options = FUNCTIONS[path]
    target = locate_function(path)
    signature = target.signature
    args, kwargs = split_call(
        data.draw, signature.names, signature.has_var_positional, signature.has_var_keyword
    )
    decorated = target.decorated
    assert oracle_key(decorated, *args, **kwargs) == cachectl_key(path, args, kwargs, **options)


@FAST
@given(data=st.data())
def test_keyword_only_parameters(data: st.DataObject) -> None:
    args, kwargs = split_call(data.draw, ["a"], True, True)
    for name in ("flag", "other"):
        if data.draw(st.booleans()):
            kwargs[name] = data.draw(values)
    path = "tests.oracle.corpus.keyword_only"
    assert oracle_key(corpus.keyword_only, *args, **kwargs) == cachectl_key(path, args, kwargs)


@pytest.mark.parametrize("method", sorted(corpus.HASHED))
@FAST
@given(a=values, b=values)
def test_each_supported_hash_method(method: str, a: Any, b: Any) -> None:
    decorated = corpus.HASHED[method]
    expected = oracle_key(decorated, a, b=b)
    target = locate_function("tests.oracle.corpus._with_hash")  # same module, for the namespace
    fname = keys.function_namespace(decorated.__module__, decorated.__qualname__, GENERATION)
    key = keys.memoize_entry_key(
        fname,
        keys.memoize_key_arguments(
            keys.CallSignature.from_signature(inspect.signature(decorated.uncached)),
            (a,),
            {"b": b},
            GENERATION,
        ),
        stored_versions(fname, None),
        getattr(hashlib, method),
    )
    assert target.module == decorated.__module__
    assert expected == key


@FAST
@given(pid=st.integers(), role=values, active=values, by_keyword=st.booleans())
def test_method_keys_use_the_instance_repr(
    pid: int, role: Any, active: Any, by_keyword: bool
) -> None:
    person = corpus.Person(pid)
    args, kwargs = ((role,), {"active": active}) if by_keyword else ((role, active), {})
    expected = oracle_key(corpus.Person.has_membership, person, *args, **kwargs)
    path = "tests.oracle.corpus.Person.has_membership"
    assert expected == cachectl_key(path, args, kwargs, instance_id=repr(person))


@FAST
@given(pid=st.integers(), x=values)
def test_method_ignoring_self_has_no_instance_version(pid: int, x: Any) -> None:
    expected = oracle_key(corpus.Person.shared, corpus.Person(pid), x)
    path = "tests.oracle.corpus.Person.shared"
    assert expected == cachectl_key(
        path, (x,), {}, instance_id=repr(corpus.Person(pid)), ignore=("self",)
    )


@FAST
@given(name=values, strict=values)
def test_classmethod_keys_use_the_class_repr(name: Any, strict: Any) -> None:
    expected = oracle_key(corpus.Person.lookup, corpus.Person, name, strict=strict)
    path = "tests.oracle.corpus.Person.lookup"
    assert expected == cachectl_key(path, (name,), {"strict": strict})


def test_caching_id_is_the_instance_id() -> None:
    if GENERATION != "2.5":
        # Legacy called __caching_id__ with a second argument: apps could not use it.
        with pytest.raises(TypeError):
            oracle_key(corpus.Tagged.value, corpus.Tagged(), 3)
        return
    expected = oracle_key(corpus.Tagged.value, corpus.Tagged(), 3)
    path = "tests.oracle.corpus.Tagged.value"
    assert expected == cachectl_key(path, (3,), {}, instance_id="tagged-42")


def test_namespaces_are_filtered_per_generation() -> None:
    nested = locate_function("tests.oracle.corpus:nested")
    fname = keys.function_namespace(nested.module, nested.qualname, GENERATION)
    if GENERATION == "2.5":
        assert fname == "tests.oracle.corpus._make_nested.locals.inner"
    else:
        assert fname == "tests.oracle.corpus._make_nested.<locals>.inner"
    person_ns = keys.instance_namespace("m", "Person.f", "Person(1)", GENERATION)
    assert person_ns == ("m.Person.f.Person1" if GENERATION == "2.5" else "m.Person.f.Person(1)")


def test_delete_memoized_resets_the_version_key_cachectl_names() -> None:
    oracle_key(corpus.positional, 1, 2)
    target = locate_function("tests.oracle.corpus.positional")
    version_key = keys.version_key(
        keys.function_namespace(target.module, target.qualname, GENERATION)
    )
    with corpus.app.app_context():
        before = corpus.cache.get(version_key)
        corpus.cache.delete_memoized(corpus.positional)
        after = corpus.cache.get(version_key)
    assert before and after and before != after
    assert len(after) == keys.VERSION_LENGTH


def test_bound_method_delete_resets_the_instance_version_key() -> None:
    person = corpus.Person(9)
    oracle_key(corpus.Person.has_membership, person, 1)
    target = locate_function("tests.oracle.corpus.Person.has_membership")
    function_key = keys.version_key(
        keys.function_namespace(target.module, target.qualname, GENERATION)
    )
    instance_key = keys.version_key(
        keys.instance_namespace(target.module, target.qualname, repr(person), GENERATION)
    )
    with corpus.app.app_context():
        before = (corpus.cache.get(function_key), corpus.cache.get(instance_key))
        corpus.cache.delete_memoized(person.has_membership)
        after = (corpus.cache.get(function_key), corpus.cache.get(instance_key))
    assert before[0] == after[0]
    assert before[1] != after[1]


def positional_key(
    path: str,
    args: tuple,
    *,
    instance_id: str | None = None,
    ignore: tuple[str, ...] = (),
    **options: Any,
) -> str:
    """The key ``keys.PositionalKeys`` forms for ``path(*args)``, set up as ``KeyForm`` sets
    it up for a line of ``delete-memoized --each``."""
    target = locate_function(path)
    fname = keys.function_namespace(target.module, target.qualname, GENERATION)
    instance_fname = None
    if target.is_method and "self" not in ignore:
        instance_fname = keys.instance_namespace(
            target.module, target.qualname, instance_id, GENERATION
        )
    make_name = options.get("make_name")
    form = keys.PositionalKeys(
        target.signature,
        GENERATION,
        make_name(fname) if make_name else fname,
        stored_versions(fname, instance_fname),
        options.get("hash_method") or DEFAULT_HASH,
        source=target.source() if options.get("source_check") else None,
        ignore=ignore,
        first_id=target.class_id() if target.is_classmethod else instance_id,
    )
    return form.key(args)


@pytest.mark.parametrize("path", sorted(FUNCTIONS))
@FAST
@given(data=st.data())
def test_positional_keys(path: str, data: st.DataObject) -> None:
    """A call of positional arguments only, as many as bind (each count, extra ones for
    *args): the key formed once per function and then per call is the library's."""
    target = locate_function(path)
    fewest, most = target.positional_arity()
    count = data.draw(st.integers(fewest, min(most, fewest + 4)))
    args = tuple(data.draw(values) for _ in range(count))
    expected = oracle_key(target.decorated, *args)
    assert positional_key(path, args, **FUNCTIONS[path]) == expected


@FAST
@given(pid=st.integers(), args=st.lists(values, min_size=1, max_size=2))
def test_positional_keys_of_methods(pid: int, args: list[Any]) -> None:
    """The instance's id, or the class's, first; none where ``self`` is ignored. (The
    library's key first: forming it stores the versions.)"""
    person, call = corpus.Person(pid), tuple(args)
    path = "tests.oracle.corpus.Person."
    expected = oracle_key(corpus.Person.has_membership, person, *call)
    assert positional_key(path + "has_membership", call, instance_id=repr(person)) == expected
    expected = oracle_key(corpus.Person.lookup, corpus.Person, *call)
    assert positional_key(path + "lookup", call) == expected
    expected = oracle_key(corpus.Person.shared, person, *call[:1])
    shared = positional_key(path + "shared", call[:1], instance_id=repr(person), ignore=("self",))
    assert shared == expected
