"""The cache configuration the app runs with: where it is read from, what it resolves to.

cachectl must connect exactly where the app connects, with the same prefix, timeouts and
serializer, under the defaults of the Flask-Caching generation the app runs.

- ``sources``: read ``CACHE_*`` settings from files and the environment
- ``resolve``: merge the sources in precedence order, remembering who said what
- ``settings``: one cache's settings as a typed record, every default in one place
- ``generations``: which Flask-Caching generation applies, and what it changes
- ``constants``: the limits the options name and the settings enforce (imports nothing)
- ``groups``: the invalidation groups a config file keeps
- ``export``: ``config --write``, resolved settings written to a cachectl.toml

Import from the submodules: this package imports nothing itself, so ``--help`` can read
``constants`` without loading the settings.
"""
