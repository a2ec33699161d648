"""Facts the command line's options name and the settings enforce, kept in a module that
imports nothing, so that ``--help`` can show them without loading the settings."""

#: The hashlib names Flask-Caching's hash settings take (CACHE_HASH_METHOD, ...).
HASH_METHOD_NAMES = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
#: The longest lifetime any backend stores faithfully: memcached's and the
#: FileSystemCache header's expiry are 32-bit; past it a server refuses or wraps.
MAX_TIMEOUT = 2**31 - 1
#: Flask-Caching's default ``key_prefix`` of ``@cache.cached`` views.
DEFAULT_VIEW_PREFIX = "view/%s"
