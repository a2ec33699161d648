"""Oracle: cachectl's @cached view keys and template fragment keys equal the library's."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from flask import Flask, render_template
from flask_caching import Cache, make_template_fragment_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachectl import keys
from cachectl.config.generations import resolve_generation

GENERATION = resolve_generation(None).name
HASH = resolve_generation(None).hash_method
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

app = Flask(__name__)
cache = Cache(app, config={"CACHE_TYPE": "SimpleCache"})


@app.route("/plain/<path:rest>")
@cache.cached()
def plain(rest):
    return rest


@app.route("/prefixed/<path:rest>")
@cache.cached(key_prefix="pages/%s/v2")
def prefixed(rest):
    return rest


@app.route("/constant")
@cache.cached(key_prefix="all_comments")
def constant():
    return "c"


@app.route("/search/<path:rest>")
@cache.cached(query_string=True)
def search(rest):
    return rest


@app.route("/qprefixed/<path:rest>")
@cache.cached(query_string=True, key_prefix="q/%s")
def qprefixed(rest):
    return rest


VIEWS = {
    "plain": (plain, "view/%s", False),
    "prefixed": (prefixed, "pages/%s/v2", False),
    "constant": (constant, "all_comments", False),
    "search": (search, "view/%s", True),
    "qprefixed": (qprefixed, "q/%s", True),
}

path_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="%?#\\\x00"), min_size=1, max_size=10
)
query_items = st.lists(st.tuples(st.text(max_size=4), st.text(max_size=4)), max_size=5)


def library_key(view, path: str, query: str) -> tuple[str, str]:
    """The key the real decorator forms for a request, and that request's path."""
    with app.test_request_context(path, query_string=query):
        from flask import request

        return view.make_cache_key(use_request=True), request.path


@pytest.mark.parametrize("name", sorted(VIEWS))
@FAST
@given(segment=path_text, items=query_items, shuffle=st.randoms())
def test_view_keys(name: str, segment: str, items: list, shuffle) -> None:
    view, key_prefix, query_string = VIEWS[name]
    path = "/constant" if name == "constant" else f"/{name}/{quote(segment)}"
    query = urlencode(items)
    expected, request_path = library_key(view, path, query)

    if query_string:
        reordered = items[:]
        shuffle.shuffle(reordered)  # the order in the command line must not matter
        given_query = urlencode(reordered)
    else:
        given_query = None
    request = keys.ViewKeyRequest(request_path, key_prefix, given_query)
    assert keys.view_key(request, GENERATION, HASH) == expected


def test_repeated_query_arguments_are_all_kept() -> None:
    expected, path = library_key(search, "/search/x", "tag=b&tag=a&page=2&empty=")
    given_query = "page=2&tag=a&empty=&tag=b"
    assert (
        keys.view_key(keys.ViewKeyRequest(path, "view/%s", given_query), GENERATION, HASH)
        == expected
    )


@FAST
@given(
    name=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12),
    vary_on=st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=8), max_size=4),
)
def test_fragment_keys(name: str, vary_on: list[str]) -> None:
    assert keys.fragment_key(name, vary_on) == make_template_fragment_key(name, vary_on=vary_on)


def test_rendered_fragments_are_stored_under_the_derived_keys(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "page.html").write_text(
        "<h1>x</h1>\n"
        "{% cache 60, 'sidebar', user, lang %}S{% endcache %}\n"
        "{% cache 60 %}unnamed{% endcache %}\n"
    )
    page_app = Flask("pages", template_folder=str(templates))
    page_cache = Cache(page_app, config={"CACHE_TYPE": "SimpleCache"})
    with page_app.test_request_context():
        render_template("page.html", user="alice", lang="fr")
        stored = set(page_app.extensions["cache"][page_cache]._cache)
    filename = str(templates / "page.html")
    assert stored == {
        keys.fragment_key("sidebar", ["alice", "fr"]),
        keys.fragment_key(keys.implicit_fragment_name(filename, 3)),
    }
