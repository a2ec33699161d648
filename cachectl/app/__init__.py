"""App mode: what cachectl reads from the Flask application's own code and objects.

- ``loader``: import the app (``--app``) as ``flask --app`` does, and read its caches
- ``static_lookup``: look at the app's objects without running any of their code
- ``functions``: find a memoized function by its dotted name, and read its arguments
- ``templates``: the ``{% cache %}`` blocks of the app's templates, with Jinja2's parser

Import from the submodules: this package imports nothing itself, so a command that does
not load an app does not pay for Flask.
"""
