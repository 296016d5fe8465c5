"""Griffe extension for the API reference (mkdocs.yml): Sphinx roles as inline code.

The docstrings are numpydoc and name other objects with Sphinx roles (``:class:`Explainer```,
``:func:`~salience.viz.limits```), which Markdown would print as written. This rewrites each
role into inline code of the name it shows (``~`` keeps the last component, as in Sphinx),
before griffe parses the docstrings. It links nothing, so a role naming a private or relative
object cannot break the strict build.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const|ref):`(~?)([^`<>]+?)`")


def _plain(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRoles(griffe.Extension):
    """Replace ``:role:`target``` with ```target``` in every docstring of the package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[str] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.path in seen:
                continue
            seen.add(obj.path)
            if obj.docstring is not None:
                obj.docstring.value = _ROLE.sub(_plain, obj.docstring.value)
            stack.extend(m for m in obj.members.values() if not m.is_alias)
