"""Commands about cachectl itself: config (show or write the settings), completion."""

from __future__ import annotations

import sys

import click

from cachectl import __version__
from cachectl.cli import render
from cachectl.cli.group import Session, cli, pass_session
from cachectl.errors import UsageError
from cachectl.runtime.wording import counted


def _write_config(session: Session, target: str, force: bool) -> None:
    """Write every cache of the app (or the one resolved) as named caches."""
    from cachectl.config.export import export_cache, render_toml, write_file

    caches = session.every_app_cache()
    for _, resolved in caches:
        resolved.settings()  # a setting no command could use is not written either
    if caches:
        exported = [export_cache(cache.label, resolved) for cache, resolved in caches]
        generation = caches[0][1].generation
        origin = f"the app {session.app_import}"
    else:
        resolved = session.config
        resolved.settings()
        exported = [export_cache(resolved.cache_name, resolved)]
        generation, origin = resolved.generation, "the resolved configuration"
    if not generation.decided:  # the file would record a guess as the app's generation
        raise UsageError(
            f"config --write records which Flask-Caching the app runs, and it is "
            f"{generation.origin}: pass --compat 2.5, --compat legacy (1.9-2.4) or the app's "
            "release"
        )
    header = [
        f"Written by cachectl {__version__} from {origin}.",
        "Use it config-only (no app start-up): cachectl --config FILE --cache NAME COMMAND",
    ]
    text = render_toml(exported, generation.name, header)
    if target != "-":
        write_file(target, text, overwrite=force)
    for cache in exported:
        for note in cache.notes:
            session.output.warn(f"cache {cache.name}: {note}")
    if target == "-" and session.output.as_json:
        session.output.document(
            {"ok": True, "caches": [cache.name for cache in exported], "toml": text}
        )
    elif target == "-":
        sys.stdout.write(text)
    elif session.output.as_json:
        session.output.document(
            {"ok": True, "written": target, "caches": [cache.name for cache in exported]}
        )
    else:
        session.output.result(
            f"wrote {counted(len(exported), 'cache')} to {target}: "
            + ", ".join(cache.name for cache in exported)
        )


@cli.command()
@click.option(
    "--write",
    "target",
    metavar="FILE",
    help="Write the settings of every cache the app registers to FILE (TOML, - for stdout) "
    "as named caches, secrets left out, for config-only runs without starting the app.",
)
@click.option("--force", is_flag=True, help="With --write: replace FILE if it exists.")
@pass_session
def config(session: Session, target: str | None, force: bool) -> None:
    """Show the cache configuration cachectl resolved, and where each value came from.

    Passwords and URL credentials are masked. Nothing is sent to the cache server.
    With --app, the connection is the one the app's live backend object uses,
    whatever passed the settings to it (app.config, Cache(config=...),
    init_app(app, config)). An app with several caches and no --cache: every
    cache is listed, with the names --cache takes; --cache all shows each one's
    settings in full.

    --write FILE loads the app once and writes what cron jobs and other hosts need
    to run config-only from then on (the app's factory, with its side effects, no
    longer runs on each command):

    \b
      cachectl --app 'shop:create_app()' config --write cachectl.toml
      cachectl --config cachectl.toml --cache DATA_CACHE_CONFIG clear --yes
    """
    if force and target is None:
        raise UsageError("--force goes with --write FILE")
    from cachectl.cli import every_cache

    if every_cache.is_every_cache(session):
        every_cache.run(session)
        return
    if target is not None:
        _write_config(session, target, force)
        return
    if session.request.cache_name is None:
        loaded = session.loaded_app()
        if loaded is not None and len(loaded.caches) > 1:
            render.cache_list(session, session.every_app_cache())
            return
    resolved = session.config
    resolved.settings()  # what no command could use is an error here too (exit 2)
    client = render.memcached_client(resolved)
    if session.output.as_json:
        decided = resolved.generation.decided
        shown_client = {} if client is None else {"memcached_client": client}
        session.output.document(
            {
                "ok": True,
                "cache": resolved.cache_name,
                # None when nothing says which: what differs between generations exits 2.
                "generation": resolved.generation.name if decided else None,
                "generation_source": resolved.generation.origin,
                "settings": render.settings_document(resolved),
                **shown_client,
            }
        )
        return
    session.output.result(render.generation_text(resolved))
    render.settings_table(session, resolved)
    if client is not None:
        session.output.result(f"memcached client library: {client['library']} ({client['why']})")


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@pass_session
def completion(session: Session, shell: str) -> None:
    """Print the shell completion script for SHELL (the files in completions/ are its output).

    \b
      cachectl completion bash > ~/.local/share/bash-completion/completions/cachectl
      cachectl completion zsh > "${fpath[1]}/_cachectl"
      cachectl completion fish > ~/.config/fish/completions/cachectl.fish
    """
    from click.shell_completion import get_completion_class

    completion_class = get_completion_class(shell)
    assert completion_class is not None  # click.Choice admits only the shells Click knows
    completer = completion_class(cli, {}, "cachectl", "_CACHECTL_COMPLETE")
    if session.output.as_json:
        session.output.document({"ok": True, "shell": shell, "script": completer.source()})
        return
    click.echo(completer.source())
