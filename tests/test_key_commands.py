"""The key commands through Click's runner: what they print, and how they refuse."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest

from tests.conftest import RedisTarget, run, run_console


def test_make_fragment_key_prints_the_key_and_where_it_is_stored(redis_target: RedisTarget) -> None:
    result = run("--url", redis_target.url, "make-fragment-key", "user_card", "alice", "fr")
    assert result.stdout == "_template_fragment_cache_user_card_alice_fr\n"
    assert "stored as flask_cache__template_fragment_cache_user_card_alice_fr" in result.stderr


def test_make_fragment_key_on_the_filesystem_names_the_file(tmp_path: Path) -> None:
    result = run("--dir", str(tmp_path), "--json", "make-fragment-key", "sidebar")
    document = json.loads(result.stdout)
    digest = hashlib.sha256(b"_template_fragment_cache_sidebar").hexdigest()
    assert document["stored_as"] == str(tmp_path / digest)


def _version(client: object, key: str) -> None:
    """A version key as Flask-Caching stores one (a pickled 6-character string)."""
    client.set(f"flask_cache_{key}", b"!" + pickle.dumps("ABCDEF"))  # type: ignore[attr-defined]


def test_delete_memoized_dry_run_names_the_version_key(redis_target: RedisTarget) -> None:
    _version(redis_target.client, "nowhere.models.get_user_memver")
    result = run(
        "--url", redis_target.url, "--json",
        "delete-memoized", "nowhere.models:get_user", "--dry-run",
    )  # fmt: skip
    document = json.loads(result.stdout)
    assert list(document["written"]) == ["nowhere.models.get_user_memver"]
    assert document["version_key_existed"] is True
    assert redis_target.client.dbsize() == 1


def test_delete_memoized_never_creates_a_version_key(redis_target: RedisTarget) -> None:
    # Config-only, the name cannot be checked by importing it: nothing stored under it
    # is how a misspelling looks, so a deploy script sees exit 1 ("nothing matched").
    for extra in ((), ("--dry-run",), ("42",)):
        result = run(
            "--url", redis_target.url, "--json", "delete-memoized", "nowhere.models:get_usr",
            *extra, "--signature", "(user_id)",
        )  # fmt: skip
        document = json.loads(result.stdout)
        assert result.exit_code == 1, (extra, result.stderr)
        assert document["written"] == {} and document["nothing_matched"] is True
        assert "nothing matched nowhere.models.get_usr" in result.stderr
        assert "misspelled, or nothing cached yet" in result.stderr
    assert redis_target.client.dbsize() == 0


def test_delete_memoized_with_a_method_instance_uses_the_instance_version_key(
    redis_target: RedisTarget,
) -> None:
    _version(redis_target.client, "nowhere.models.Person.roles.Person7_memver")
    _version(redis_target.client, "nowhere.models.Person.roles.Person(7)_memver")
    result = run(
        "--url", redis_target.url, "--json", "delete-memoized", "nowhere.models.Person.roles",
        "--instance", "Person(7)", "--dry-run",
    )  # fmt: skip
    written = list(json.loads(result.stdout)["written"])
    assert written == ["nowhere.models.Person.roles.Person7_memver"]
    legacy = run(
        "--url", redis_target.url, "--compat", "legacy", "--json", "delete-memoized",
        "nowhere.models.Person.roles", "--instance", "Person(7)", "--dry-run",
    )  # fmt: skip
    assert list(json.loads(legacy.stdout)["written"]) == [
        "nowhere.models.Person.roles.Person(7)_memver"
    ]


def test_delete_memoized_with_nothing_cached_deletes_nothing_and_writes_nothing(
    redis_target: RedisTarget,
) -> None:
    result = run(
        "--url", redis_target.url, "--json", "delete-memoized", "nowhere.models.get_user", "42",
        "--signature", "(user_id)",
    )  # fmt: skip
    document = json.loads(result.stdout)
    assert result.exit_code == 1  # nothing matched a name known by its path alone
    assert document["removed"] == 0 and document["deleted"] == []
    assert document["nothing_matched"] is True
    assert redis_target.client.dbsize() == 0


def test_delete_view_dry_run_prints_the_key_per_generation(redis_target: RedisTarget) -> None:
    plain = run("--url", redis_target.url, "--json", "delete-view", "/about", "--dry-run")
    assert json.loads(plain.stdout)["deleted"] == ["view//about"]
    digest = hashlib.md5(str((("a", "1"), ("b", "2"))).encode()).hexdigest()
    legacy = run(
        "--url", redis_target.url, "--compat", "legacy", "--json", "delete-view", "/s",
        "--query", "b=2&a=1", "--dry-run",
    )  # fmt: skip
    assert json.loads(legacy.stdout)["deleted"] == ["/s" + digest]


REFUSALS = [
    (["{url}", "delete-view"], "PATH or --endpoint"),
    (["{url}", "delete-view", "/x", "--endpoint", "e"], "PATH or --endpoint"),
    (["{url}", "delete-view", "--endpoint", "e"], "--endpoint needs the app"),
    (["{url}", "delete-view", "/x", "--query", "a=1", "--all-queries"], "--query or --all-queries"),
    (["{url}", "delete-memoized", "m.f", "1", "--purge"], "give no ARGs"),
    (["{url}", "delete-memoized", "m.f", "--purge", "--verhash"], "--purge or --verhash"),
    (["{url}", "delete-memoized", "m.f", "1", "--signature", "(a, b=len)"], "not a literal"),
    (["{dir}", "delete-memoized", "m.f", "--purge"], "cannot list its keys"),
    (["{dir}", "delete-view", "/x", "--all-queries"], "cannot list its keys"),
    (["{url}", "fragments", "{tmp}/missing"], "is not a directory"),
]


@pytest.mark.parametrize(("args", "message"), REFUSALS, ids=[m for _, m in REFUSALS])
def test_refusals_exit_2_with_a_reason(
    redis_target: RedisTarget, tmp_path: Path, args: list[str], message: str
) -> None:
    where = {"{url}": ["--url", redis_target.url], "{dir}": ["--dir", str(tmp_path)]}
    argv = [
        part
        for arg in args
        for part in (where[arg] if arg in where else [arg.replace("{tmp}", str(tmp_path))])
    ]
    result = run(*argv)
    assert result.exit_code == 2, (argv, result.output)
    assert message in result.output, (argv, result.output)


def test_fragments_without_directories_or_app_says_what_to_pass(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("fragments")
    assert result.exit_code == 2
    assert "template directories" in result.stderr


def test_fragments_without_jinja2_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    import sys

    (tmp_path / "page.html").write_text("{% cache 60, 'footer' %}x{% endcache %}")
    monkeypatch.setitem(sys.modules, "jinja2", None)  # as if it were not installed
    result = run("fragments", str(tmp_path))
    assert result.exit_code == 2
    assert "pip install 'flask-cachectl[fragments]'" in result.stderr


def test_a_function_that_cannot_be_imported_says_why(
    tmp_path: Path, redis_target: RedisTarget
) -> None:
    package = tmp_path / "shopmod"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text("import a_module_not_installed\n\ndef get_user(uid): ...\n")

    result = run_console(
        "--url", redis_target.url, "delete-memoized", "shopmod.models.get_user", "42", cwd=tmp_path
    )  # fmt: skip

    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "error: cannot import shopmod.models.get_user here (ModuleNotFoundError: No module "
        "named 'a_module_not_installed'), so its signature is unknown: pass --signature "
        "'(arg, other=default, ...)'"
    )
