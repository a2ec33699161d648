"""Stored cache values made safe to show, and operator input made into values to store.

Cached values are pickles, and loading a pickle can run any code its author chose. An
operator reading a cache on a production host must not hand that power to whoever managed
to write into the cache, so cachectl loads pickles with an unpickler that only builds plain
data (``unpickler``): every other class becomes an ``OpaqueObject`` (``placeholders``) that
names the class and keeps its captured state, without the class ever being imported or
called. ``--unsafe-unpickle`` is the operator's explicit way out. Decoding and showing
(``rendering``) run within ``DecodeLimits`` (``limits``), control characters shown as
escapes (``terminal_text``); ``stored`` reads each backend's format; ``operator_input``
parses what ``set`` is given.

Import from the submodules: this package imports nothing itself, so a command that only
parses input does not pay for the unpickler.
"""
