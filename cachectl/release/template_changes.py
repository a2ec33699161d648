"""The template side of a release plan: ``{% cache %}`` blocks whose content changed.

Both revisions of a changed template are parsed with Jinja2
(``cachectl.app.templates``), and each block of the older one is matched with the newer
one's by its name and vary_on expressions (by its line, for a block without a name,
whose implicit name is the template's file name and line). A block whose parsed body
differs, or that is gone, names the keys the older revision stored.
"""

from __future__ import annotations

from cachectl.app.templates import FragmentBlock, blocks_in_source, referenced_templates
from cachectl.errors import UsageError
from cachectl.release.git_revisions import Checkout, FileChange
from cachectl.release.plan_actions import FRAGMENT, FRAGMENT_PATTERN, Action, Plan

#: A Jinja2 tag that names another template (git grep's extended regular expression).
_USES_TEMPLATE = r"\{%-?[[:space:]]*(extends|include|import|from)[[:space:]]"


#: The app's template folders (with --app): each as a path in the checkout, and as the
#: app's loader names it (the start of an unnamed block's implicit name).
Folders = dict[str, str]


def template_place(path: str, directories: Folders | None) -> tuple[str, str] | None:
    """``(template directory, template name)`` of a repository path that is a template:
    under one of ``directories`` (the app's template folders, with --app), else under a
    directory named ``templates``, as Flask's convention has it."""
    if directories is not None:
        for directory in directories:
            base = directory.rstrip("/") + "/"
            if directory in ("", ".") or path.startswith(base):
                return directory, path[len(base) :] if directory not in ("", ".") else path
        return None
    parts = path.split("/")
    if "templates" not in parts[:-1]:
        return None
    cut = len(parts) - 1 - parts[:-1][::-1].index("templates")
    return "/".join(parts[:cut]), "/".join(parts[cut:])


def _filename(checkout: Checkout, folders: Folders | None, directory: str, name: str) -> str:
    """The template's file name as the app's loader forms it: its folder as the app
    names it (with --app), else the folder in this checkout; joined with the name."""
    folder = folders[directory] if folders is not None else f"{checkout.top}/{directory}"
    return f"{folder.rstrip('/')}/{name}"


def _identity(block: FragmentBlock) -> tuple[object, ...]:
    if block.name is None:
        return ("implicit", block.filename, block.line)
    return (block.name, tuple(block.vary_on))


def plan_template_change(
    plan: Plan,
    checkout: Checkout,
    change: FileChange,
    directories: Folders | None,
    app: object = None,
) -> None:
    """Add to ``plan`` the fragments one changed template makes stale."""
    if change.old_path is None or change.status in "AC":
        return  # a new template: nothing of it can be in the cache yet
    place = template_place(change.old_path, directories)
    if place is None:
        return  # not a template
    try:
        old_source = checkout.read(plan.since, change.old_path)
        new_source = checkout.read(plan.until, change.new_path) if change.new_path else None
    except UnicodeDecodeError as exc:  # Jinja2 reads templates as UTF-8: so would the app
        if b"cache" in (checkout.read_bytes(plan.since, change.old_path) or b""):
            plan.look(change.old_path, f"not UTF-8 text at one revision: {exc}", change.old_path)
        return  # else an image or such beside the templates: no {% cache %} in it
    if old_source is None or "cache" not in old_source:
        return
    directory, name = place
    # The implicit name of a block holds the file name as the app's loader forms it:
    # the template folder joined with the name, here the folder in this checkout.
    filename = _filename(checkout, directories, directory, name)
    new_place = template_place(change.new_path, directories) if change.new_path else None
    try:
        old_blocks = blocks_in_source(old_source, name, filename, app)
        new_blocks = []
        if new_source is not None and new_place is not None:
            # A template renamed: its named blocks keep their keys, so they compare;
            # the implicit names of the others changed with the file name.
            new_name = new_place[1]
            new_filename = _filename(checkout, directories, new_place[0], new_name)
            new_blocks = blocks_in_source(new_source, new_name, new_filename, app)
    except UsageError as exc:  # Jinja2 is not installed here
        plan.look(change.old_path, str(exc), change.old_path)
        return
    except Exception as exc:  # Jinja2's TemplateSyntaxError, at either revision
        line = getattr(exc, "lineno", None)
        plan.look(change.old_path, f"does not parse: {exc}", f"{change.old_path}:{line}")
        return
    matches = {_identity(block): block for block in new_blocks}
    for old in old_blocks:
        new = matches.get(_identity(old))
        if new is not None and new.body == old.body:
            continue
        where = f"{change.old_path}:{old.line}"
        reason = "{% cache %} block " + ("changed" if new is not None else "removed or moved")
        if old.name is None:
            reason += f" (its implicit name holds the file name {filename} and the line)"
        if old.name_value is None:
            plan.look(change.old_path, f"{reason}; its fragment name {old.name} is computed", where)
        elif old.vary_on_values is not None:
            plan.add(
                Action(FRAGMENT, old.name_value, reason, where, vary_on=tuple(old.vary_on_values))
            )
        else:
            reason += f"; vary_on {', '.join(old.vary_on)} known at render time: every value"
            plan.add(Action(FRAGMENT_PATTERN, old.name_value, reason, where))


def changed_templates(
    plan: Plan,
    checkout: Checkout,
    changes: list[FileChange],
    directories: Folders | None,
    app: object = None,
) -> dict[str, str]:
    """The names of the templates the release changed, and of those that extend,
    include or import one of them (at the old revision, whose pages are cached), each
    with how it is touched: ``page.html (which uses base.html)``."""
    changed: dict[str, str] = {}
    folders = set()
    for change in changes:
        place = template_place(change.old_path, directories) if change.old_path else None
        if place is not None and change.status not in "AC":
            changed[place[1]] = place[1]
            folders.add(place[0])
    if not changed:
        return changed
    users: dict[str, set[str]] = {}
    paths = tuple(f"{folder}/" if folder else "." for folder in sorted(folders))
    for path in checkout.files_containing(plan.since, _USES_TEMPLATE, paths, regex=True):
        place = template_place(path, directories)
        try:
            source = checkout.read(plan.since, path) if place else None
        except UnicodeDecodeError:
            continue  # a template that does not decode uses nothing we know
        if place is None or source is None:
            continue
        try:
            for name in referenced_templates(source, app):
                users.setdefault(name, set()).add(place[1])
        except Exception:  # a template that does not parse uses nothing we know
            continue
    waiting = sorted(changed)
    while waiting:
        name = waiting.pop(0)
        for user in sorted(users.get(name, ())):
            if user not in changed:
                changed[user] = f"{user} (which uses {changed[name]})"
                waiting.append(user)
    return changed
