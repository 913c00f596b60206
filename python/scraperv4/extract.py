"""Extract structured items from pages with CSS-selector templates.

A template (JSON or YAML file, or a dict) names an optional item selector, the fields of
each item, the links to follow and the next page; ``docs/templates.md`` describes the schema.
Mistakes (invalid selector, unknown key, duplicate or missing field name, bad regex) raise
:class:`~scraperv4.exceptions.TemplateError` when the template is loaded, naming the template
and the field.

Every page is extracted within caps (a hostile page cannot make extraction produce gigabytes
or run for ever): at most 50,000 item elements and 20,000 links, extracted values of at most
8 bytes per byte of page plus 1 MiB; a page over a cap raises
:class:`~scraperv4.exceptions.ExtractionLimitError` naming it (``docs/security.md``).

>>> from scraperv4.extract import Template
>>> template = Template.from_dict({
...     "id": "cards", "item": ".card",
...     "fields": [{"name": "title", "selector": "h2"},
...                {"name": "link", "selector": "a", "extract": "attr:href"}]})
>>> template.extract('<div class="card"><h2> Red  Shoe </h2><a href="/p/1">x</a></div>',
...                  "https://shop.example/list")
[{'title': 'Red Shoe', 'link': 'https://shop.example/p/1'}]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Optional, Union

from scraperv4 import _core

__all__ = [
    "TEXT_BLOCK_ELEMENTS",
    "TEXT_SKIPPED_ELEMENTS",
    "Template",
    "TemplateRegistry",
    "engine_stats",
]

#: HTML elements whose start and end separate words in a ``text`` field (``docs/templates.md``).
TEXT_BLOCK_ELEMENTS: frozenset[str] = frozenset(_core.TEXT_BLOCK_ELEMENTS)
#: Elements whose content is left out of an enclosing element's text.
TEXT_SKIPPED_ELEMENTS: frozenset[str] = frozenset(_core.TEXT_SKIPPED_ELEMENTS)


def engine_stats() -> dict[str, Any]:
    """Pages parsed since the process started, by engine: ``fast`` (the fast engine built the
    page's tree), ``dom_by_template`` (templates with HTML fields, always html5ever) and
    ``fallbacks`` (pages the fast engine handed to html5ever, by reason)."""
    return _core.extraction_stats()


PathLike = Union[str, "os.PathLike[str]"]


class Template:
    """A compiled template. Build it with :meth:`from_file`, :meth:`from_dict` or
    :meth:`from_json` / :meth:`from_yaml`."""

    __slots__ = ("_inner",)

    def __init__(self, native: _core.Template) -> None:
        self._inner = native

    @classmethod
    def from_dict(cls, template: Mapping[str, Any]) -> Template:
        """A template from a dict (the JSON schema)."""
        return cls(_core.Template.from_json(json.dumps(template), "<dict>"))

    @classmethod
    def from_json(cls, text: str, origin: str = "<json>") -> Template:
        """A template from JSON text."""
        return cls(_core.Template.from_json(text, origin))

    @classmethod
    def from_yaml(cls, text: str, origin: str = "<yaml>") -> Template:
        """A template from YAML text."""
        return cls(_core.Template.from_yaml(text, origin))

    @classmethod
    def from_file(cls, path: PathLike) -> Template:
        """A template from a ``.json``, ``.yaml`` or ``.yml`` file."""
        name = os.fspath(path)
        with open(name, encoding="utf-8") as file:
            text = file.read()
        if name.endswith((".yaml", ".yml")):
            return cls.from_yaml(text, name)
        return cls.from_json(text, name)

    @property
    def id(self) -> str:
        """The id jobs refer to as ``template_id``."""
        return self._inner.id

    @property
    def field_names(self) -> list[str]:
        """The fields of each item, in order."""
        return self._inner.field_names

    @property
    def engine(self) -> Literal["fast", "dom"]:
        """``"fast"``: pages go to the fast engine, and to html5ever when they need a rule it
        does not carry out; ``"dom"``: a field takes HTML, html5ever parses every page. The
        items are the same either way."""
        return self._inner.engine

    def extract(self, html: str, base_url: str) -> list[dict[str, Any]]:
        """The items of one page; relative URLs resolve against ``base_url``.

        Raises:
            ExtractionLimitError: the page is over a per-page cap.
        """
        return self._inner.extract(html, base_url)

    def extract_many(self, pages: Iterable[tuple[str, str]]) -> list[list[dict[str, Any]]]:
        """The items of many ``(html, base_url)`` pages, on all cores without the GIL
        (:class:`~scraperv4.exceptions.ExtractionLimitError` for a page over a cap)."""
        return self._inner.extract_many(list(pages))

    def links(self, html: str, base_url: str) -> list[str]:
        """Links to follow: absolute, within the template's scope, deduplicated."""
        return self._inner.links(html, base_url)

    def next_page(self, html: str, base_url: str) -> Optional[str]:
        """The next page's URL, when the template has pagination and the page a next link."""
        return self._inner.next_page(html, base_url)

    def __repr__(self) -> str:
        return f"Template(id={self.id!r}, fields={self.field_names!r})"


class TemplateRegistry:
    """The templates of a directory (``*.json``, ``*.yaml``, ``*.yml``), by id."""

    def __init__(self, path: PathLike) -> None:
        self._inner = _core.TemplateRegistry(os.fspath(path))

    def get(self, template_id: str) -> Template:
        """The template ``template_id``; :class:`TemplateError` when there is none."""
        return Template(self._inner.get(template_id))

    def __getitem__(self, template_id: str) -> Template:
        return self.get(template_id)

    def ids(self) -> list[str]:
        """The ids, sorted."""
        return self._inner.ids()
