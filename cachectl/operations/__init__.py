"""What cachectl does, one operation per function, beneath the command line.

Each operation takes typed arguments (a backend, the typed settings, the loaded
app when there is one) and returns a result whose ``document()`` is the JSON
document ``--json`` prints. The CLI parses options, calls one operation and
renders its result; anything else that drives cachectl (a batch of commands, a
``flask cachectl`` command group) calls the same functions.

- ``entries``: get, set, delete listed keys, delete by pattern
- ``clearing``: the rules of a clear, and the clear itself
- ``inspection``: list and count keys, statistics
- ``lifetimes``: read and change how long entries live (ttl, expire, persist), prune
- ``memoized``: what ``delete_memoized`` and ``delete_memoized_verhash`` do
- ``views``: what ``delete_cached`` does, from a path or an endpoint
- ``fragments``: template fragment keys, and the ``{% cache %}`` blocks of templates
"""
