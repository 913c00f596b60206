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

Trying a template on a page before a crawl (``scraperv4 parse`` does the same from a shell)
— the items, the links and next page it would follow, and the fields that matched nothing:

>>> check = template.check('<div class="card"><h2>Shoe</h2></div>', "https://shop.example/")
>>> check.items, check.unmatched
([{'title': 'Shoe', 'link': None}], ['link'])
"""

from __future__ import annotations

import dataclasses
import html as html_text
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Optional, Union

from scraperv4 import _core
from scraperv4.exceptions import TemplateError

__all__ = [
    "TEXT_BLOCK_ELEMENTS",
    "TEXT_SKIPPED_ELEMENTS",
    "FieldCheck",
    "Template",
    "TemplateCheck",
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
        """A template from a ``.json``, ``.yaml`` or ``.yml`` file.

        Raises:
            TemplateError: the file cannot be read, or is not a valid template.
        """
        name = os.fspath(path)
        try:
            with open(name, encoding="utf-8") as file:
                text = file.read()
        except OSError as error:
            reason = error.strerror or str(error)
            hint = "; check the path" if isinstance(error, FileNotFoundError) else ""
            raise TemplateError(f"template file {name}: {reason}{hint}", name) from None
        except UnicodeDecodeError:
            raise TemplateError(f"template file {name}: not UTF-8 text", name) from None
        if name.endswith((".yaml", ".yml")):
            return cls.from_yaml(text, name)
        return cls.from_json(text, name)

    @property
    def id(self) -> str:
        """The id jobs refer to as ``template_id``."""
        return self._inner.id

    @property
    def fingerprint(self) -> str:
        """32 hex digits that change whenever the template's definition does (not its
        file's format, layout or comments)."""
        return self._inner.fingerprint

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

    def check(self, html: str, base_url: str) -> TemplateCheck:
        """Everything the template does with one page: its items, the links and next page
        a crawl would follow, and what each field's selector matched (in a notebook the
        result shows as a table)."""
        report = self._inner.field_report(html)
        fields = [
            FieldCheck(
                name=f["name"],
                selector=f["selector"],
                items_matched=f["items_matched"],
                page_matches=f["page_matches"],
            )
            for f in report["fields"]
        ]
        return TemplateCheck(
            template_id=self.id,
            url=base_url,
            items=self.extract(html, base_url),
            links=self.links(html, base_url),
            next_page=self.next_page(html, base_url),
            item_elements=report["item_elements"],
            fields=fields,
        )

    def __repr__(self) -> str:
        return f"Template(id={self.id!r}, fields={self.field_names!r})"


@dataclasses.dataclass(frozen=True)
class FieldCheck:
    """What one field's selector matched on a page.

    Attributes:
        name: the field.
        selector: its selector.
        items_matched: item elements in which the selector matched something.
        page_matches: elements of the whole page it matches, inside items or not.
    """

    name: str
    selector: str
    items_matched: int
    page_matches: int

    def problem(self, item_elements: int) -> Optional[str]:
        """Why the field gives nothing on this page, or ``None`` when it matched."""
        if self.items_matched or not item_elements:
            return None
        if self.page_matches:
            return (
                f"matched in no item, but {self.page_matches} element(s) outside the items: "
                "a field's selector is relative to each item"
            )
        return "matched nothing on this page"


@dataclasses.dataclass(frozen=True)
class TemplateCheck:
    """A template tried on one page (:meth:`Template.check`)."""

    template_id: str
    url: str
    items: list[dict[str, Any]]
    links: list[str]
    next_page: Optional[str]
    item_elements: int
    fields: list[FieldCheck]

    @property
    def unmatched(self) -> list[str]:
        """The fields that matched nothing in any item."""
        return [f.name for f in self.fields if f.problem(self.item_elements)]

    def describe(self, *, limit: int = 10) -> str:
        """The check as text (what ``scraperv4 parse`` prints)."""
        lines = [f"template {self.template_id} on {self.url}"]
        lines.append(f"items ({len(self.items)}):")
        for item in self.items[:limit]:
            lines.append(f"  {json.dumps(item, ensure_ascii=False)}")
        if len(self.items) > limit:
            lines.append(f"  ... and {len(self.items) - limit} more")
        lines.append(f"links to follow ({len(self.links)}):")
        lines.extend(f"  {link}" for link in self.links[:limit])
        if len(self.links) > limit:
            lines.append(f"  ... and {len(self.links) - limit} more")
        lines.append(f"next page: {self.next_page or '(none)'}")
        problems = [(f, f.problem(self.item_elements)) for f in self.fields]
        problems = [(f, p) for f, p in problems if p]
        if not self.item_elements:
            lines.append("the item selector matched nothing on this page: no items")
        elif problems:
            lines.append("fields that matched nothing:")
            lines.extend(f"  {f.name} ({f.selector}): {p}" for f, p in problems)
        else:
            lines.append(f"every field matched ({self.item_elements} item element(s))")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        escape = html_text.escape
        rows = "".join(
            f"<tr><td>{escape(f.name)}</td><td><code>{escape(f.selector)}</code></td>"
            f"<td>{f.items_matched} / {self.item_elements}</td><td>{f.page_matches}</td>"
            f"<td>{escape(f.problem(self.item_elements) or 'ok')}</td></tr>"
            for f in self.fields
        )
        return (
            f"<p>template <b>{escape(self.template_id)}</b> on {escape(self.url)}: "
            f"{len(self.items)} items, {len(self.links)} links, next page "
            f"{escape(self.next_page or '(none)')}</p>"
            "<table><thead><tr><th>field</th><th>selector</th><th>items matched</th>"
            f"<th>page matches</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
        )


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
