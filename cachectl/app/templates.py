"""Find the ``{% cache %}`` blocks in an app's templates, with Jinja2's own parser.

Regular expressions would miss blocks split over lines, commented out or
inside raw sections; parsing the templates as Jinja2 does finds exactly the
blocks the app renders, with the line numbers Flask-Caching uses for blocks
that have no name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cachectl import keys
from cachectl.app import static_lookup as static
from cachectl.errors import UsageError


@dataclass
class FragmentBlock:
    """One ``{% cache timeout[, name[, vary_on...]] %}`` block."""

    template: str
    #: The file name as the app's template loader reports it (implicit names use it).
    filename: str
    line: int
    timeout: str
    #: The name expression as written, or None when the block has no name.
    name: str | None
    vary_on: list[str] = field(default_factory=list)
    #: The fragment name when it is known without rendering (a constant, or implicit).
    name_value: str | None = None
    #: The vary_on values when they are all constants.
    vary_on_values: list[str] | None = None
    #: The block's parsed body without line numbers: equal exactly when what it renders
    #: is (``plan`` compares revisions by it; not part of any listing).
    body: str = field(default="", repr=False, compare=False)

    def document(self) -> dict[str, Any]:
        """The block as ``fragments --json`` lists it."""
        return {**{k: v for k, v in vars(self).items() if k != "body"}, "key": self.key}

    @property
    def key(self) -> str | None:
        """The key, when every part is a constant (otherwise it depends on rendering)."""
        if self.name_value is None or self.vary_on_values is None:
            return None
        return keys.fragment_key(self.name_value, self.vary_on_values)


def expression_text(node: Any) -> str:
    """Readable source for the expressions a {% cache %} tag usually holds."""
    from jinja2 import nodes

    if isinstance(node, nodes.Const):
        return repr(node.value)
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        return f"{expression_text(node.node)}.{node.attr}"
    if isinstance(node, nodes.Getitem):
        return f"{expression_text(node.node)}[{expression_text(node.arg)}]"
    if isinstance(node, nodes.Call):
        arguments = [expression_text(arg) for arg in node.args]
        arguments += [f"{kw.key}={expression_text(kw.value)}" for kw in node.kwargs]
        return f"{expression_text(node.node)}({', '.join(arguments)})"
    if isinstance(node, nodes.Filter):
        return f"{expression_text(node.node)}|{node.name}"
    if isinstance(node, nodes.Concat):
        return " ~ ".join(expression_text(part) for part in node.nodes)
    if isinstance(node, nodes.BinExpr):
        return f"{expression_text(node.left)} {node.operator} {expression_text(node.right)}"
    return f"<{type(node).__name__.lower()}>"


def _scanner_extension(found: list[FragmentBlock]) -> type:
    from jinja2 import nodes
    from jinja2.ext import Extension

    class CacheTagScanner(Extension):
        """Parses {% cache %} the way Flask-Caching's extension does, and records it."""

        tags = {"cache"}  # noqa: RUF012  # Jinja2's own class attribute

        def parse(self, parser: Any) -> Any:
            line = next(parser.stream).lineno
            timeout = parser.parse_expression()
            name = parser.parse_expression() if parser.stream.skip_if("comma") else None
            vary_on = []
            while parser.stream.skip_if("comma"):
                vary_on.append(parser.parse_expression())
            body = parser.parse_statements(("name:endcache",), drop_needle=True)
            filename = parser.filename or parser.name or "?"
            if name is None:
                name_value = keys.implicit_fragment_name(filename, line)
            elif isinstance(name, nodes.Const) and isinstance(name.value, str):
                name_value = name.value
            else:
                name_value = None
            constant = all(isinstance(v, nodes.Const) and isinstance(v.value, str) for v in vary_on)
            found.append(
                FragmentBlock(
                    template=parser.name or filename,
                    filename=filename,
                    line=line,
                    timeout=expression_text(timeout),
                    name=None if name is None else expression_text(name),
                    vary_on=[expression_text(v) for v in vary_on],
                    name_value=name_value,
                    vary_on_values=[v.value for v in vary_on] if constant else None,
                    body=repr(body),  # Jinja2's node repr holds fields, not positions
                )
            )
            return body

    return CacheTagScanner


def app_template_directories(app: Any) -> list[str]:
    """The directories the app's and its blueprints' template loaders search."""
    directories = []
    loaders = [app.jinja_loader, *(bp.jinja_loader for bp in app.iter_blueprints())]
    for loader in loaders:
        for path in static.read(loader, "searchpath") or []:
            if os.path.isdir(path) and path not in directories:
                directories.append(path)
    return directories


def _scanning_environment(found: list[FragmentBlock], app: Any = None) -> Any:
    """A Jinja2 environment (the app's, with --app) that records each block in ``found``."""
    try:
        import jinja2
    except ImportError as exc:
        raise UsageError(
            "listing fragments reads the templates with Jinja2, which is not installed here: "
            "pip install 'flask-cachectl[fragments]' (or jinja2)"
        ) from exc
    scanner = _scanner_extension(found)
    if app is not None:
        return app.jinja_env.overlay(extensions=[scanner])
    return jinja2.Environment(
        extensions=["jinja2.ext.i18n", "jinja2.ext.do", "jinja2.ext.loopcontrols", scanner]
    )


def blocks_in_source(source: str, name: str, filename: str, app: Any = None) -> list[FragmentBlock]:
    """The ``{% cache %}`` blocks of one template's text (``plan`` reads it from git);
    a template that does not parse raises Jinja2's TemplateSyntaxError."""
    found: list[FragmentBlock] = []
    _scanning_environment(found, app).parse(source, name=name, filename=filename)
    return found


def referenced_templates(source: str, app: Any = None) -> list[str]:
    """The templates ``source`` extends, includes or imports by a literal name."""
    from jinja2 import meta

    tree = _scanning_environment([], app).parse(source)
    return [name for name in meta.find_referenced_templates(tree) if name is not None]


def find_fragments(
    directories: list[str], app: Any = None
) -> tuple[list[FragmentBlock], list[str]]:
    """Every {% cache %} block under ``directories``, and the files that did not parse.

    File names are formed as Jinja2's FileSystemLoader forms them (the search
    directory joined with the template name), which is what the implicit
    fragment name of an unnamed block is made of.
    """
    found: list[FragmentBlock] = []
    environment = _scanning_environment(found, app)
    from jinja2 import TemplateSyntaxError

    unreadable = []
    for directory in directories:
        root = Path(directory)
        if not root.is_dir():
            raise UsageError(f"{directory} is not a directory")
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            filename = f"{directory.rstrip('/')}/{name}"
            try:
                source = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue  # not a text template
            try:
                environment.parse(source, name=name, filename=filename)
            except TemplateSyntaxError as exc:
                if "cache" in source:  # a template we could not check
                    unreadable.append(f"{filename}, line {exc.lineno}: {exc.message}")
    return found, unreadable
