"""Paths someone else may have planted: a link or a FIFO in CACHE_DIR named like an entry,
an audit log or a ``config --write`` target that is a link, a FIFO or has no directory,
a config file found by walking up that is a link, a FIFO, or names code to import.

Each must end (a FIFO that blocks is a timeout, a violation) with one ``error:`` line and
exit 2, or, where the file is only a side matter (an audit log without
``--audit-required``), succeed with a warning; nothing is created through a link
(``absent``) and no planted module runs. What the corpus cannot plant (a file of another
owner, the bytes of an outside file afterwards) is tested in tests/test_hostile_files.py.
"""

from __future__ import annotations

import hashlib

from tests.fuzz.corpus import OK, USAGE, VALID, Corpus


def _entry(key: str) -> str:
    """The file FileSystemCache keeps ``key`` in (Flask-Caching 2.5's sha256, the
    generation installed beside cachectl), inside the case's CACHE_DIR."""
    return "fscache/" + hashlib.sha256(key.encode()).hexdigest()


#: Commands that open the file of one key.
_KEY_COMMANDS: dict[str, tuple[str, ...]] = {
    "get": ("get", "k"),
    "get --raw": ("get", "--raw", "k"),
    "ttl": ("ttl", "k"),
    "expire": ("expire", "k", "60"),
    "persist": ("persist", "k"),
    "set": ("set", "k", "v"),
}
#: Run by a module planted beside a config file: its marker must never appear.
_PLANTED_MODULE = b"open('{tmp}/planted-module-ran', 'w').close()\nEvil = Ser = object\n"


def _cache_dir(c: Corpus) -> None:
    for command, args in _KEY_COMMANDS.items():
        name = command.split()[0] + ("-raw" if "--raw" in command else "")
        c.add(
            f"files-entry-link-{name}",
            command.split()[0],
            "filesystem",
            USAGE,
            "a link planted in CACHE_DIR under the key's file name: never followed",
            args=args,
            files={"outside": b"root:x:0:0:root:/root:/bin/bash\n"},
            symlinks={_entry("k"): "{tmp}/outside"},
            must_match=("symbolic link",),
        )
        c.add(
            f"files-entry-dangling-link-{name}",
            command.split()[0],
            "filesystem",
            USAGE,
            "a link to a file that does not exist yet: nothing is created through it",
            args=args,
            symlinks={_entry("k"): "{tmp}/created-through-link"},
            absent=("{tmp}/created-through-link",),
        )
        c.add(
            f"files-entry-fifo-{name}",
            command.split()[0],
            "filesystem",
            USAGE,
            "a FIFO under the key's file name: refused, not waited on",
            args=args,
            fifos=(_entry("k"),),
            must_match=("FIFO",),
        )
    for command, args in (
        ("stats", ("stats",)),
        ("prune", ("prune",)),
        ("clear", ("clear", "--yes")),
    ):
        c.add(
            f"files-entry-link-and-fifo-{command}",
            command,
            "filesystem",
            OK,
            "a directory-wide command passes over links and FIFOs: not read, not removed",
            args=args,
            symlinks={_entry("a"): "{tmp}/created-through-link"},
            fifos=(_entry("b"),),
            absent=("{tmp}/created-through-link",),
        )


def _audit_log(c: Corpus) -> None:
    faults: list[tuple[str, dict[str, object], str]] = [
        ("fifo", {"fifos": ("audit.jsonl",)}, "the audit log is a FIFO: not waited on"),
        (
            "link",
            {
                "symlinks": {"audit.jsonl": "{tmp}/created-through-link"},
                "absent": ("{tmp}/created-through-link",),
            },
            "the audit log is a link: not followed, nothing created through it",
        ),
    ]
    for name, planted, reason in faults:
        for required in (False, True):
            flags = ("--audit-required",) if required else ()
            c.add(
                f"files-audit-{name}{'-required' if required else ''}",
                "delete",
                "filesystem",
                USAGE if required else OK,
                reason + (" (required: nothing done)" if required else " (a warning)"),
                globals_=("--audit-log", "audit.jsonl", *flags),
                args=("delete", "k"),
                must_match=("FIFO" if name == "fifo" else "symbolic link",),
                **planted,  # type: ignore[arg-type]
            )
    c.add(
        "files-audit-no-directory",
        "set",
        "filesystem",
        OK,
        "the audit log's directory is missing: a warning, the command's status stands",
        globals_=("--audit-log", "no/such/dir/audit.jsonl"),
        args=("set", "k", "v"),
        must_match=("warning: audit log not written",),
    )


def _config_write(c: Corpus) -> None:
    faults: list[tuple[str, tuple[str, ...], dict[str, object], str]] = [
        (
            "link",
            (),
            {"symlinks": {"out.toml": "{tmp}/created-through-link"}},
            "a link where the file goes",
        ),
        (
            "link-force",
            ("--force",),
            {"symlinks": {"out.toml": "{tmp}/created-through-link"}},
            "--force does not write through a link",
        ),
        (
            "link-to-dir-force",
            ("--force",),
            {"symlinks": {"out.toml": "{tmp}/fscache"}},
            "a link to a directory, with --force",
        ),
        ("fifo", (), {"fifos": ("out.toml",)}, "a FIFO where the file goes"),
        ("fifo-force", ("--force",), {"fifos": ("out.toml",)}, "--force on a FIFO: not opened"),
    ]
    for name, flags, planted, reason in faults:
        c.add(
            f"files-config-write-{name}",
            "config --write",
            "filesystem",
            USAGE,
            reason,
            args=("config", "--write", "out.toml", *flags),
            absent=("{tmp}/created-through-link",),
            **planted,  # type: ignore[arg-type]
        )
    c.add(
        "files-config-write-no-directory-force",
        "config --write",
        "filesystem",
        USAGE,
        "--force into a directory that does not exist",
        args=("config", "--write", "no/such/out.toml", "--force"),
        must_match=("no directory no/such",),
        absent=("{tmp}/no",),
    )


def _found_config(c: Corpus) -> None:
    real = b'CACHE_TYPE = "FileSystemCache"\nCACHE_DIR = "fscache"\n'
    skipped: list[tuple[str, dict[str, object], str]] = [
        (
            "link",
            {"files": {"real.toml": real}, "symlinks": {"cachectl.toml": "{tmp}/real.toml"}},
            "symbolic link",
        ),
        ("fifo", {"fifos": ("cachectl.toml",)}, "FIFO"),
        (
            "pyproject-link",
            {
                "files": {"real.toml": b"[tool.cachectl]\n" + real},
                "symlinks": {"pyproject.toml": "{tmp}/real.toml"},
            },
            "symbolic link",
        ),
    ]
    for name, planted, what in skipped:
        for command in ("get", "config"):
            c.add(
                f"files-found-{name}-{command}",
                command,
                "none",
                USAGE,
                f"a config file found from here that is a {what}: skipped with a warning",
                args=VALID[command],
                must_match=(rf"warning: skipped .*: it is a {what}",),
                **planted,  # type: ignore[arg-type]
            )
    for command in ("get", "config"):
        c.add(
            f"files-found-pyproject-fifo-{command}",
            command,
            "none",
            USAGE,
            "a FIFO named pyproject.toml: not waited on (nor mentioned: it may not be ours)",
            args=VALID[command],
            fifos=("pyproject.toml",),
        )
    naming_code = {
        "type": b'CACHE_TYPE = "evilmod.Evil"\n',
        "serializer": real + b'CACHE_SERIALIZER = "evilmod.Ser"\n',
    }
    for name, content in naming_code.items():
        for command, args in (
            ("get", ("get", "k")),
            ("keys", ("keys",)),
            ("clear", ("clear", "--dry-run")),
        ):
            c.add(
                f"files-found-names-code-{name}-{command}",
                command,
                "none",
                USAGE,
                "a found config file naming a class to import: that takes --config",
                args=args,
                files={"cachectl.toml": content, "evilmod.py": _PLANTED_MODULE},
                absent=("{tmp}/planted-module-ran",),
                must_match=("--config",),
            )
    c.add(
        "files-named-config-fifo",
        "config",
        "none",
        USAGE,
        "--config naming a FIFO: refused, not waited on",
        globals_=("--config", "cache.toml"),
        args=("config",),
        fifos=("cache.toml",),
        must_match=("FIFO",),
    )
    c.add(
        "files-named-config-link",
        "config",
        "none",
        OK,
        "--config naming a link: the operator chose it, so it is followed",
        globals_=("--config", "cache.toml"),
        args=("config",),
        files={"real.toml": real},
        symlinks={"cache.toml": "{tmp}/real.toml"},
    )


def add_cases(c: Corpus) -> None:
    _cache_dir(c)
    _audit_log(c)
    _config_write(c)
    _found_config(c)
