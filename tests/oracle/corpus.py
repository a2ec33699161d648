"""Functions memoized by the real Flask-Caching: the corpus the oracle tests derive keys for.

Kept importable (and free of the test machinery) so cachectl can locate every
function by its dotted name, exactly as it would in an operator's app.
"""

import hashlib

from flask import Flask
from flask_caching import Cache

app = Flask(__name__)
cache = Cache(app, config={"CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": 0})


def upper_name(name):
    return name.upper() + "!"


@cache.memoize()
def positional(a, b):
    return a, b


@cache.memoize()
def with_defaults(a, b=0, c="", d=False, e=None, h=5, g="x"):
    return a


@cache.memoize()
def var_positional(a, *args):
    return a


@cache.memoize()
def var_keyword(a, b=2, **kwargs):
    return a


@cache.memoize()
def keyword_only(a, *rest, flag=True, other, **extra):
    return a


@cache.memoize(make_name=upper_name)
def renamed(a, b=1):
    return a


@cache.memoize(args_to_ignore=["session"])
def ignoring(session, user_id, verbose=False):
    return user_id


@cache.memoize(source_check=True)
def source_checked(a, b=None):
    return a


def _with_hash(method):
    @cache.memoize(hash_method=method)
    def hashed(a, b=3):
        return a

    return hashed


HASHED = {
    name: _with_hash(getattr(hashlib, name))
    for name in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
}


def _make_nested():
    @cache.memoize()
    def inner(x, y=7):
        return x

    return inner


nested = _make_nested()


@cache.memoize()
def grüße_straße(name, höflich=True):  # non-ASCII on purpose
    return name


class Person:
    def __init__(self, pid):
        self.pid = pid

    def __repr__(self):
        return f"Person({self.pid})"

    @cache.memoize()
    def has_membership(self, role_id, active=True):
        return role_id

    @cache.memoize(args_to_ignore=["self"])
    def shared(self, x):
        return x

    @classmethod
    @cache.memoize()
    def lookup(cls, name, strict=False):
        return name

    @staticmethod
    @cache.memoize()
    def helper(x, y=1):
        return x


class Tagged:
    """An instance with a stable id of its own (honoured since 2.5)."""

    def __caching_id__(self):
        return "tagged-42"

    @cache.memoize()
    def value(self, n):
        return n
