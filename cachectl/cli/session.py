"""The session one invocation works in: the options it was given, and what is resolved
from them on first use (configuration, app, backend), each at most once, so that a batch's
lines share one configuration, one app load and one connection per cache."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cachectl.cli.audit_record import AuditRecord
from cachectl.runtime.output import Output

if TYPE_CHECKING:
    from cachectl.app.loader import AppCache, LoadedApp
    from cachectl.backends import CacheBackend
    from cachectl.backup.writer import BackupWriter
    from cachectl.cli.once import OnceRequest
    from cachectl.config.resolve import ConfigRequest, ResolvedConfig
    from cachectl.config.settings import CacheSettings


class Session:
    """What one invocation knows: the options, and what is resolved from them on first
    use (``config`` never connects, ``get`` does; an app is loaded at most once). The
    live app and its cache objects live here, not in the settings."""

    def __init__(
        self,
        request: ConfigRequest,
        timeout: float,
        output: Output,
        debug: bool,
        *,
        new_run: bool = True,
    ) -> None:
        """``new_run``: the session of a new invocation, which forgets the secrets an
        earlier one in this process met (``for_cache`` makes one of the same run)."""
        self.request = request
        self.timeout = timeout
        self.output = output
        self.debug = debug
        self._config: ResolvedConfig | None = None
        self._settings: CacheSettings | None = None
        self._loaded_app: LoadedApp | None = None
        #: Backends built so far, by cache, and whether each was checked reachable: the
        #: lines of a batch share one connection per cache, as one command does.
        self._backends: dict[str | None, tuple[CacheBackend, bool]] = {}
        #: Flask's ScriptInfo when running as ``flask cachectl``: Flask finds the app.
        self.script_info: Any = None
        #: The audit log's view of the run (``cachectl.runtime.audit``): the command line, the
        #: command and its options once it starts (a batch's lines do not replace it),
        #: what it reported doing, why it failed.
        self.audit = AuditRecord()
        #: ``--backup FILE``: where this run keeps what it removes (``backup_dir`` in the
        #: config file names one per run instead); the writer, once a command needs it.
        self.backup_path: str | None = None
        self._backup: BackupWriter | None = None
        #: ``--once-per``: the claim the command runs under (``cli/once.py``), or None.
        self.once: OnceRequest | None = None
        from cachectl.runtime import secrets

        if new_run:
            secrets.forget()
        for name, value, _ in request.overrides:  # masked even if the configuration fails
            secrets.remember({name: value})

    @property
    def app_import(self) -> str | None:
        """The app this invocation loads, if any (``--app``, or ``FLASK_APP`` when no
        config file is named or found)."""
        return self.request.sources()[0]

    def loaded_app(self) -> LoadedApp | None:
        """The app, started once however many of its caches the command needs."""
        if self._loaded_app is None and self.app_import is not None:
            from cachectl.app.loader import load_flask_app

            self._loaded_app = load_flask_app(self.app_import, self.script_info)
        return self._loaded_app

    @property
    def app(self) -> Any:
        """The loaded Flask app, or None without --app."""
        loaded = self.loaded_app()
        return loaded.app if loaded is not None else None

    def app_cache(self, cache_name: str | None = None) -> AppCache | None:
        """The app's Cache object the request picks (None without --app)."""
        loaded = self.loaded_app()
        if loaded is None:
            return None
        from cachectl.app.loader import select_app_cache

        wanted = cache_name if cache_name is not None else self.request.cache_name
        return select_app_cache(loaded.caches, wanted, loaded.import_path)

    @property
    def config(self) -> ResolvedConfig:
        """The merged settings of the chosen cache, with the source of each."""
        if self._config is None:
            self._config = self._resolve(self.request)
        return self._config

    @property
    def settings(self) -> CacheSettings:
        if self._settings is None:
            self._settings = self.config.settings()
        return self._settings

    def _resolve(self, request: ConfigRequest) -> ResolvedConfig:
        from cachectl.config.resolve import resolve_config
        from cachectl.runtime.secrets import remember

        resolved = resolve_config(request, self.app_cache(request.cache_name))
        remember(resolved.values)  # before anything can fail and quote them
        for warning in resolved.warnings:
            self.output.warn(warning)
        return resolved

    @property
    def resolved_config(self) -> ResolvedConfig | None:
        """The configuration if it was resolved (never resolves it: for the audit log)."""
        return self._config

    def built_backends(self) -> list[CacheBackend]:
        """The backends built so far, in order (never builds one: for the audit log)."""
        return [backend for backend, _ in self._backends.values()]

    def known_secrets(self) -> frozenset[str]:
        """The credentials this run has met so far (the command line's, every cache's
        resolved settings), so no message or traceback shows them."""
        from cachectl.runtime.secrets import remembered

        return remembered()

    def every_app_cache(self) -> list[tuple[AppCache, ResolvedConfig]]:
        """Each cache of the loaded app with its resolved settings (overrides applied)."""
        loaded = self.loaded_app()
        if loaded is None:
            return []
        return [
            (cache, self._resolve(replace(self.request, cache_name=str(cache.index))))
            for cache in loaded.caches
        ]

    def for_cache(self, cache_name: str) -> Session:
        """This invocation on another of its caches (``--cache all``, the caches nested
        under this one): the app loaded once and the connections built so far are
        shared, as a batch's lines share them."""
        self.loaded_app()
        other = Session(
            replace(self.request, cache_name=cache_name),
            self.timeout,
            self.output,
            self.debug,
            new_run=False,
        )
        other._loaded_app = self._loaded_app
        other._backends = self._backends
        other.script_info = self.script_info
        other.backup_path, other._backup = self.backup_path, self.backup_writer()
        return other

    def backend(self, create_dir: bool = False, connect: bool = True) -> CacheBackend:
        """The backend of the chosen cache; checked reachable unless ``connect`` is off.
        Built once per cache and reused (a batch's lines share its connection); a
        ``create_dir`` request builds it again, since only building creates CACHE_DIR.
        A command only checked (``cachectl.runtime.checking``) stops here: its checks passed."""
        from cachectl.runtime.checking import stop_if_only_checking

        stop_if_only_checking()
        from cachectl.backends import build_backend
        from cachectl.runtime.output import route_library_logging

        route_library_logging(self.output, self.debug, self.request.app_import is not None)
        wanted = self.request.cache_name
        backend, checked = self._backends.get(wanted, (None, False))
        if backend is None or create_dir:
            chosen = self.app_cache()
            app_built = None
            if (
                chosen is not None
                and chosen.live.opaque
                and self.config.source("CACHE_TYPE").startswith("app ")
            ):
                # A custom backend class: how it connects is known only to the object
                # the app built, so that object itself is used.
                app_built = chosen.backend
            backend = build_backend(self.settings, self.timeout, create_dir, app_built)
            checked = False
            writer = self.backup_writer()
            if writer is not None:
                labels = {
                    "cache": self.config.cache_name,
                    "generation": getattr(
                        self.config.generation, "name", str(self.config.generation)
                    ),
                }
                backend.attach_backup(writer, labels)
        if connect and not checked:
            self._backends[wanted] = (backend, False)  # the target, even if unreachable
            backend.check()
            checked = True
        self._backends[wanted] = (backend, checked)
        return backend

    @property
    def current_backup(self) -> BackupWriter | None:
        """The run's backup writer if one was made (never makes one)."""
        return self._backup

    def backup_writer(self) -> BackupWriter | None:
        """Where this run keeps what it removes or overwrites: ``--backup FILE``, else a new
        file in the config file's ``backup_dir``; None without either, or for a command
        that changes nothing (``cli.backups.backup_wanted`` decides that)."""
        if self._backup is None:
            from cachectl.cli.backups import backup_for

            self._backup = backup_for(self)
        return self._backup
