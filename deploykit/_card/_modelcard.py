"""``deploykit.ModelCard``: a package's governance card, readable by reviewers and checkable by machines."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

from ._profiles import ERROR, Finding, validate

JSON_NAME = "card.json"


class ModelCard:
    """The model card of one package version.

    Filled automatically from the model, the data, SHAP and the environment, and from the fields the
    data scientist passed as ``deploykit.package(..., card={...})``. Every package has one
    (``Package.card``); the service serves it at ``GET /card`` and ``GET /card.json``.

    Parameters
    ----------
    data : dict
        The card's JSON envelope, as :meth:`to_dict` returns it.

    Examples
    --------
    >>> card = pkg.card                                    # doctest: +SKIP
    >>> [f.field for f in card.validate("eu-ai-act-high-risk") if f.severity == "error"]  # doctest: +SKIP
    ['intended_use.human_oversight', 'fairness']
    >>> card.save("review/")                               # doctest: +SKIP
    """

    def __init__(self, data: dict) -> None:
        if not isinstance(data, dict) or "model_card_toolkit" not in data:
            raise ValueError("ModelCard takes a card's JSON envelope (a dict with a 'model_card_toolkit' key)")
        self._data = data

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        """Read a card from its JSON file, or from a folder holding ``card.json``.

        A card inside a package folder is read only once the package's signature and files check out
        (:class:`~deploykit.IntegrityError` otherwise); a card saved on its own has nothing to check against.
        """
        from .._security.signing import verify_card_file

        path = Path(path)
        file = path / JSON_NAME if path.is_dir() else path
        verify_card_file(file)
        return cls(json.loads(file.read_text()))

    # -- facts ----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._data["model_details"]["name"]

    @property
    def version(self) -> str:
        return self._data["model_details"]["version"]

    @property
    def model_sha256(self) -> str:
        return self._data["model_details"]["model_sha256"]

    @property
    def profile(self) -> str:
        """The profile the card was checked against when it was made."""
        return self._data["validation"]["profile"]

    @property
    def findings(self) -> list[Finding]:
        """The findings of :attr:`profile` when the card was made."""
        return [Finding(**f) for f in self._data["validation"]["findings"]]

    def plots(self) -> dict[str, bytes]:
        """The card's plots as PNG bytes, by name (``roc``, ``confusion_matrix``, ``shap_summary``, ...)."""
        return {name: base64.b64decode(p["png"]) for name, p in self._data["plots"].items()}

    # -- formats --------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The JSON envelope; its ``"model_card_toolkit"`` key holds a Model Card Toolkit v0.0.2 card."""
        return copy.deepcopy(self._data)

    def to_json(self) -> str:
        return json.dumps(self._data, indent=1, ensure_ascii=False, allow_nan=False) + "\n"

    def to_html(self) -> str:
        """One self-contained, printable HTML page: styles and plots inline, nothing fetched."""
        from ._render import html

        return html(self._data)

    def to_markdown(self, *, images: str | None = "card") -> str:
        """Markdown with Hugging Face-style YAML front matter.

        Plots are linked as ``{images}-{name}.png`` beside the file (what :meth:`save` writes); pass
        ``images=None`` to leave them out.
        """
        from ._render import markdown

        return markdown(self._data, images)

    def save(self, directory: str | Path, *, stem: str = "card") -> dict:
        """Write ``{stem}.json``, ``{stem}.html``, ``{stem}.md`` and ``{stem}-{plot}.png`` into ``directory``.

        Returns the paths written: ``{"json": ..., "html": ..., "markdown": ..., "plots": {name: ...}}``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = {"json": directory / f"{stem}.json", "html": directory / f"{stem}.html",
                   "markdown": directory / f"{stem}.md", "plots": {}}
        written["json"].write_text(self.to_json())
        written["html"].write_text(self.to_html())
        written["markdown"].write_text(self.to_markdown(images=stem))
        for name, png in self.plots().items():
            written["plots"][name] = directory / f"{stem}-{name}.png"
            written["plots"][name].write_bytes(png)
        return written

    # -- checks ---------------------------------------------------------------------------------------
    def validate(self, profile: str = "internal") -> list[Finding]:
        """Check the card against a profile: ``internal``, ``eu-ai-act-high-risk``, ``us-bank-mrm``, ``hipaa``.

        Returns the findings, errors first; each has ``severity`` (``"error"`` or ``"warning"``),
        ``field``, ``message`` (what is missing and why the profile asks for it), ``source`` (the text
        the rule comes from) and ``fix`` (the argument or card field to fill).
        """
        return validate(self._data, profile)

    def errors(self, profile: str = "internal") -> list[Finding]:
        return [f for f in self.validate(profile) if f.severity == ERROR]

    # -- display --------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        findings = self.findings
        errors = sum(f.severity == ERROR for f in findings)
        headline = ""
        evaluation = self._data["evaluation"]
        if evaluation.get("available"):
            first = evaluation["metrics"][0]
            headline = f" · {first['name']} {first['value']:.3f}"
            if first["ci_low"] is not None:
                headline += f" [{first['ci_low']:.3f}, {first['ci_high']:.3f}]"
        return (f"<ModelCard {self.name} v{self.version} · {self._data['model_details']['task']}{headline} · "
                f"{self.profile}: {errors} errors, {len(findings) - errors} warnings>")

    def _repr_html_(self) -> str:
        from ._render import summary_html

        return summary_html(self._data)
