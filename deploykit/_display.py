"""HTML displays of result objects for notebooks; markup in ``templates/display/``, CSS in a file there."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._templates import read, render

if TYPE_CHECKING:
    from ._client import Explanation
    from ._deployment import Deployment
    from ._package import Package


def _css() -> str:
    return read("display/style.css")


def package_html(pkg: Package) -> str:
    return render("display/package.html.j2", pkg=pkg, m=pkg.manifest, css=_css())


def deployment_html(dep: Deployment) -> str:
    return render("display/deployment.html.j2", dep=dep, m=dep.package.manifest, css=_css())


def explanation_html(exp: Explanation, rows: int = 3, k: int = 6) -> str:
    shown = []
    for row in range(min(rows, len(exp))):
        top = exp.top(k, row)
        scale = max((abs(v) for _, v in top), default=1.0) or 1.0
        bars = [{"name": n, "value": v, "width": 100 * abs(v) / scale} for n, v in top]
        label = exp.classes[row] if exp.classes else None
        shown.append({"row": row, "bars": bars, "base": exp.base_values[row], "out": exp.outputs[row], "label": label})
    return render("display/explanation.html.j2", exp=exp, rows=shown, more=len(exp) - len(shown), css=_css())
