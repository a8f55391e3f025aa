"""Loading the Jinja templates shipped in the wheel (``deploykit/templates``, from the repo's ``templates/``)."""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path


def templates_root() -> Path:
    shipped = importlib.resources.files("deploykit") / "templates"
    if shipped.is_dir():
        return Path(str(shipped))
    return Path(__file__).resolve().parent.parent / "templates"  # a source checkout


@functools.lru_cache(maxsize=1)
def environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_root())),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name: str, **context) -> str:
    return environment().get_template(name).render(**context)


def read(name: str) -> str:
    return (templates_root() / name).read_text()


def path(name: str) -> Path:
    """Where a shipped template or file is (e.g. ``monitoring/alerts.yml``, to hand to promtool)."""
    return templates_root() / name
