"""What ``plan`` reads from git: the caches a release invalidates, from the source alone.

Two revisions of the app's checkout are compared (``git_revisions``); their Python is
parsed (``python_source``, ``source_scan``) and followed from name to name
(``revision_sources``) without importing the app. Changed memoized functions and cached
views (``python_changes``), changed ``{% cache %}`` blocks (``template_changes``) and, on
request, cached functions that call changed code (``followed_calls``) become the actions
of a plan (``plan_actions``), each on the cache whose decorator stored it
(``plan_caches``).

Import from the submodules: this package imports nothing itself.
"""
