"""Every config source, their precedence, and every bad config ending in exit 2 with a reason."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest

from tests.conftest import run, run_console


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "CACHECTL_APP",
        "CACHECTL_CONFIG",
        "CACHECTL_CACHE",
        "CACHECTL_COMPAT",
        "FLASK_APP",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def resolved(*args: str, env: dict[str, str] | None = None) -> dict:
    result = run(*args, "--json", "config", env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def setting(document: dict, name: str) -> tuple[object, str]:
    entry = document["settings"][name]
    return entry["value"], entry["source"]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_toml_file_and_flask_caching_defaults(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", 'CACHE_TYPE = "RedisCache"\nCACHE_KEY_PREFIX = "shop_"\n')
    document = resolved("--config", str(config))
    assert setting(document, "CACHE_KEY_PREFIX") == ("shop_", f"file {config}")
    assert setting(document, "CACHE_DEFAULT_TIMEOUT")[0] == 300
    assert setting(document, "CACHE_THRESHOLD")[0] == 500
    assert setting(document, "CACHE_DEFAULT_TIMEOUT")[1].startswith("default")


def test_python_file_is_read_like_from_pyfile(tmp_path: Path) -> None:
    config = write(
        tmp_path / "settings.py",
        "import hashlib\n"
        "CACHE_TYPE = 'FileSystemCache'\n"
        "CACHE_DIR = '/var/cache/shop'\n"
        "CACHE_FILE_HASH_METHOD = hashlib.md5\n"
        "SECRET_KEY = 'not ours'\n"
        "cache_type = 'lower-case names are ignored'\n",
    )
    document = resolved("--config", str(config))
    assert setting(document, "CACHE_FILE_HASH_METHOD")[0] == "md5"
    assert setting(document, "CACHE_DIR")[0] == "/var/cache/shop"
    assert "SECRET_KEY" not in document["settings"]


def test_json_file(tmp_path: Path) -> None:
    config = write(tmp_path / "c.json", '{"CACHE_TYPE": "RedisCache", "CACHE_HASH_METHOD": "sha1"}')
    assert setting(resolved("--config", str(config)), "CACHE_HASH_METHOD")[0] == "sha1"


def test_named_caches_inherit_the_top_level(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.toml",
        'CACHE_TYPE = "RedisCache"\nCACHE_KEY_PREFIX = "main_"\n'
        '[caches.sessions]\nCACHE_KEY_PREFIX = "sess_"\n',
    )
    default = resolved("--config", str(config))
    sessions = resolved("--config", str(config), "--cache", "sessions")
    assert setting(default, "CACHE_KEY_PREFIX")[0] == "main_"
    assert setting(sessions, "CACHE_KEY_PREFIX")[0] == "sess_"
    assert setting(sessions, "CACHE_TYPE")[0] == "RedisCache"
    assert sessions["cache"] == "sessions"

    env_picked = resolved("--config", str(config), env={"CACHECTL_CACHE": "sessions"})
    assert env_picked["cache"] == "sessions"

    unknown = run("--config", str(config), "--cache", "nope", "config")
    assert unknown.exit_code == 2
    assert "no cache named 'nope'" in unknown.stderr and "sessions" in unknown.stderr


def test_python_file_named_caches(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.py",
        "CACHECTL_CACHES = {\n"
        "    'a': {'CACHE_TYPE': 'RedisCache'},\n"
        "    'b': {'CACHE_TYPE': 'RedisCache'},\n"
        "}\n",
    )
    several = run("--config", str(config), "config")
    assert several.exit_code == 2
    assert "pick one with --cache" in several.stderr
    assert resolved("--config", str(config), "--cache", "b")["cache"] == "b"


def test_precedence_override_beats_env_beats_file(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.toml",
        'CACHE_TYPE = "RedisCache"\nCACHE_KEY_PREFIX = "file_"\n'
        'CACHE_REDIS_URL = "redis://file:6379/0"\nCACHE_DEFAULT_TIMEOUT = 10\n',
    )
    env = {
        "FLASK_CACHE_KEY_PREFIX": "env_",
        "FLASK_CACHE_REDIS_URL": "redis://env:6379/0",
        "FLASK_CACHE_OPTIONS__socket_keepalive": "true",
    }
    document = resolved(
        "--config",
        str(config),
        "--env",
        "--key-prefix",
        "cli_",
        "-o",
        "CACHE_DEFAULT_TIMEOUT=60",
        env=env,
    )
    assert setting(document, "CACHE_KEY_PREFIX") == ("cli_", "--key-prefix")
    assert setting(document, "CACHE_DEFAULT_TIMEOUT") == (60, "-o CACHE_DEFAULT_TIMEOUT")
    assert setting(document, "CACHE_REDIS_URL") == (
        "redis://env:6379/0",
        "env FLASK_CACHE_REDIS_URL",
    )
    assert setting(document, "CACHE_OPTIONS")[0] == {"socket_keepalive": True}
    assert setting(document, "CACHE_TYPE") == ("RedisCache", f"file {config}")

    without_env = resolved("--config", str(config), env=env)
    assert setting(without_env, "CACHE_KEY_PREFIX")[0] == "file_"


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", 'CACHE_TYPE = "RedisCache"\nCACHE_KEY_PREFIX = "e_"\n')
    document = resolved(env={"CACHECTL_CONFIG": str(config)})
    assert setting(document, "CACHE_KEY_PREFIX")[0] == "e_"


def test_cachectl_toml_is_found_in_a_parent_directory(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path / "cachectl.toml", 'CACHE_TYPE = "RedisCache"\nCACHE_KEY_PREFIX = "found_"\n')
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    document = resolved()
    assert setting(document, "CACHE_KEY_PREFIX") == ("found_", f"file {tmp_path / 'cachectl.toml'}")


def test_pyproject_tool_table_is_found(tmp_path: Path) -> None:
    write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "shop"\n'
        '[tool.cachectl]\nCACHE_TYPE = "RedisCache"\nCACHE_KEY_PREFIX = "py_"\n',
    )
    assert setting(resolved(), "CACHE_KEY_PREFIX")[0] == "py_"


def test_without_any_source_it_says_how_to_point_at_the_app() -> None:
    result = run_console("get", "k")
    assert result.returncode == 2
    assert (
        b"--app" in result.stderr
        and b"--config" in result.stderr
        and b"cachectl.toml" in result.stderr
    )
    assert b"Traceback" not in result.stderr


def test_url_override_alone_implies_redis() -> None:
    document = resolved("--url", "redis://127.0.0.1:6390/1")
    assert setting(document, "CACHE_TYPE") == ("RedisCache", "inferred from --url")


def test_secrets_are_masked(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.toml",
        'CACHE_TYPE = "RedisCache"\n'
        'CACHE_REDIS_URL = "redis://admin:hunter2@cache:6379/0"\n'
        'CACHE_REDIS_PASSWORD = "hunter2"\n'
        'CACHE_MEMCACHED_PASSWORD = "hunter2"\n'
        'CACHE_OPTIONS = { password = "hunter2", socket_keepalive = true }\n',
    )
    for args in (("--json", "config"), ("config",)):
        result = run("--config", str(config), *args)
        assert result.exit_code == 0
        assert "hunter2" not in result.stdout
    document = resolved("--config", str(config))
    assert setting(document, "CACHE_REDIS_URL")[0] == "redis://admin:****@cache:6379/0"


def test_generation_choice(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", 'CACHE_TYPE = "FileSystemCache"\nCACHE_DIR = "/tmp/x"\n')
    legacy = resolved("--config", str(config), "--compat", "legacy")
    assert legacy["generation"] == "legacy"
    assert setting(legacy, "CACHE_FILE_HASH_METHOD")[0] == "md5"
    from_env = resolved("--config", str(config), env={"CACHECTL_COMPAT": "legacy"})
    assert from_env["generation"] == "legacy"
    installed = resolved("--config", str(config))
    assert installed["generation"] == "2.5"
    assert "installed Flask-Caching 2.5" in installed["generation_source"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("c.toml", "CACHE_TYPE = \n", "invalid TOML"),
        ("c.json", '{"CACHE_TYPE": }', "invalid JSON"),
        ("c.py", "CACHE_TYPE = (\n", "syntax error"),
        ("c.py", "import no_such_module_here\n", "ModuleNotFoundError"),
        ("c.yaml", "CACHE_TYPE: x\n", "use a .py, .toml or .json file"),
        ("c.toml", 'CACHE_TYPE = "NoSuchCache"\n', "unknown CACHE_TYPE 'NoSuchCache'"),
        ("c.toml", 'CACHE_TYPE = "myapp.nowhere.Cache"\n', "cannot import it"),
        ("c.toml", 'CACHE_TYPE = "SimpleCache"\n', "no outside tool can reach them"),
        ("c.toml", 'CACHE_TYPE = "simple"\n', "each worker even has a cache of its own"),
        ("c.toml", 'CACHE_TYPE = "NullCache"\n', "stores nothing"),
        ("c.toml", 'CACHE_TYPE = "UWSGICache"\n', "uWSGI"),
        ("c.toml", 'CACHE_KEY_PREFIX = "x"\n', "CACHE_TYPE is not set"),
        ("c.toml", 'CACHE_TYPE = "RedisCache"\nCACHE_DEFAULT_TIMEOUT = "soon"\n', "must be int"),
        ("c.toml", 'CACHE_TYPE = "RedisCache"\nCACHE_REDIS_PORT = true\n', "must be int"),
        ("c.toml", 'CACHE_TYPE = "RedisCache"\nCACHE_OPTIONS = 3\n', "must be dict"),
        (
            "c.toml",
            'CACHE_TYPE = "RedisCache"\nCACHE_DEFAULT_TIMEOUT = -1\n',
            "must not be negative",
        ),
        (
            "c.toml",
            'CACHE_TYPE = "RedisCache"\nCACHE_HASH_METHOD = "crc32"\n',
            "CACHE_HASH_METHOD must be",
        ),
        ("c.toml", 'CACHE_TYPE = "FileSystemCache"\n', "needs CACHE_DIR"),
        (
            "c.toml",
            'CACHE_TYPE = "RedisClusterCache"\nCACHE_REDIS_CLUSTER = "nohost"\n',
            "host:port",
        ),
    ],
)
def test_bad_config_exits_2_naming_the_problem(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    config = write(tmp_path / name, content)
    result = run_console("--config", str(config), "get", "k")
    assert result.returncode == 2, result.stderr
    stderr = result.stderr.decode()
    assert message in stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("error: ")


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run_console("--config", str(tmp_path / "absent.toml"), "get", "k")
    assert result.returncode == 2
    assert b"does not exist" in result.stderr


def test_bad_option_syntax_exits_2() -> None:
    result = run("-o", "CACHE_TYPE", "config")
    assert result.exit_code == 2
    assert "NAME=VALUE" in result.output
    not_cache = run("-o", "SECRET_KEY=x", "config")
    assert not_cache.exit_code == 2
    assert "not a cache setting" in not_cache.stderr


def test_unknown_settings_are_warned_about(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", 'CACHE_TYPE = "RedisCache"\nCACHE_TPYE = "typo"\n')
    result = run("--config", str(config), "config")
    assert result.exit_code == 0
    assert "CACHE_TPYE" in result.stderr and "warning" in result.stderr


@pytest.mark.parametrize(
    "spelling",
    [
        "redis",
        "RedisCache",
        "flask_caching.backends.RedisCache",
        "flask_caching.backends.rediscache.RedisCache",
    ],
)
def test_flask_caching_1x_type_spellings_reach_the_same_server(
    tmp_path: Path, redis_target, spelling: str
) -> None:
    """A 1.x app's config module, as it is: CACHE_TYPE = "redis" and its kin."""
    redis_target.client.set("shop_k", b"!" + pickle.dumps("v"))
    config = tmp_path / "settings.py"
    config.write_text(
        f"CACHE_TYPE = {spelling!r}\nCACHE_REDIS_URL = {redis_target.url!r}\n"
        "CACHE_KEY_PREFIX = 'shop_'\n"
    )
    result = run("--config", str(config), "--compat", "1.10", "get", "k")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "v\n"


@pytest.mark.parametrize("spelling", ["filesystem", "FileSystemCache"])
def test_flask_caching_1x_filesystem_spelling(tmp_path: Path, spelling: str) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    (directory / hashlib.md5(b"k").hexdigest()).write_bytes(pickle.dumps(0, 1) + pickle.dumps("v"))
    config = tmp_path / "settings.py"
    config.write_text(f"CACHE_TYPE = {spelling!r}\nCACHE_DIR = {str(directory)!r}\n")
    result = run("--config", str(config), "--compat", "1.10", "get", "k")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "v\n"
