"""``deploykit.ModelCard``: a package's governance card, readable by reviewers and checkable by machines."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path

from .._runtime import artifacts
from . import _approvals
from ._mct import to_mct
from ._profiles import ERROR, Finding, validate
from ._runs import batch_runs

JSON_NAME = "card.json"


def _with_review(data: dict, approvals: list[dict], sha256: str) -> dict:
    """The card as shown: its decisions in ``review``, the MCT section and the change log (idempotent)."""
    if not approvals:
        return data
    view = copy.deepcopy(data)
    author = (view.get("review") or {}).get("author")
    review = _approvals.standing(approvals, sha256, author)
    view["review"] = {**view.get("review", {}), "approvals": approvals, "card_sha256": sha256,
                      "status": review["status"], "summary": _approvals.summary(review)}
    view["changelog"]["approvals"] = [{**{k: a.get(k) for k in ("reviewer", "role", "decision", "time", "notes", "card_sha256",
                                                                "key_id")}, "signed": _approvals.signer(a)}
                                      for a in approvals]
    view["model_card_toolkit"] = to_mct(view)
    return view


def read_card(model_dir: Path, manifest) -> ModelCard | None:
    """A package's card, after checking its sha256; None for a package made before cards existed."""
    record = manifest.artifacts.get("card_json")
    if record is None:
        return None
    package_dir = Path(model_dir).parent
    data = json.loads(artifacts.read_verified(Path(model_dir) / record.file, record.sha256))
    data["changelog"]["batch_runs"] = batch_runs(package_dir)  # runs made after packaging, beside the package
    return ModelCard(data, approvals=_approvals.read(package_dir), sha256=record.sha256, package_dir=package_dir)


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
    >>> card.approve(reviewer="Ana Ruiz <ana@bank.example>", role="model validation",
    ...              decision="approved", notes="challenger comparison in ticket MRM-231")  # doctest: +SKIP
    """

    def __init__(self, data: dict, *, approvals: list[dict] | None = None, sha256: str | None = None,
                 package_dir: str | Path | None = None) -> None:
        if not isinstance(data, dict) or "model_card_toolkit" not in data:
            raise ValueError("ModelCard takes a card's JSON envelope (a dict with a 'model_card_toolkit' key)")
        self._data = data
        review = data.get("review") or {}
        self._sha256 = sha256 or review.get("card_sha256")
        if approvals is None:  # decisions saved inside a card's JSON: their signatures are checked here too
            approvals = _approvals.check(copy.deepcopy(review.get("approvals") or []), f"the review inside the card of {self.name} v{self.version}")
        self._approvals = list(approvals)
        self._package_dir = Path(package_dir) if package_dir is not None else None

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
    def sha256(self) -> str:
        """The sha256 of the card file as packaged (``manifest["card"]["sha256"]``); approvals are bound to it."""
        if self._sha256 is None:
            raw = json.dumps(self._data, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
            self._sha256 = hashlib.sha256(raw.encode()).hexdigest()
        return self._sha256

    @property
    def approvals(self) -> list[dict]:
        """Every review decision recorded for this package version, oldest first (see :meth:`approve`)."""
        return copy.deepcopy(self._approvals)

    @property
    def review(self) -> dict:
        """The review status of this card: ``status`` (approved, conditions, rejected, not reviewed) and ``decisions``."""
        author = (self._data.get("review") or {}).get("author")
        return _approvals.standing(self._approvals, self.sha256, author)

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
        """The JSON envelope; its ``"model_card_toolkit"`` key holds a Model Card Toolkit v0.0.2 card.

        With review decisions recorded, they are in ``review``, the MCT section and the change log; without,
        this is exactly the card file as packaged.
        """
        return copy.deepcopy(self._view())

    def to_json(self) -> str:
        return json.dumps(self._view(), indent=1, ensure_ascii=False, allow_nan=False) + "\n"

    def _view(self) -> dict:
        return _with_review(self._data, self._approvals, self.sha256) if self._approvals else self._data

    def to_html(self) -> str:
        """One self-contained, printable HTML page: styles and plots inline, nothing fetched."""
        from ._render import html

        return html(self._view())

    def to_markdown(self, *, images: str | None = "card") -> str:
        """Markdown with Hugging Face-style YAML front matter.

        Plots are linked as ``{images}-{name}.png`` beside the file (what :meth:`save` writes); pass
        ``images=None`` to leave them out.
        """
        from ._render import markdown

        return markdown(self._view(), images)

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

    # -- review ---------------------------------------------------------------------------------------
    def approve(self, *, reviewer: str, role: str, decision: str = "approved", notes: str | None = None,
                key: str | Path | None = None) -> dict:
        """Record a reviewer's decision on this card, bound to its sha256 and the time, signed with their key.

        The decision is kept beside the package (``approvals.json``), not in the card, whose sha256 the
        package manifest records, and is added to the name's audit trail. A decision edited after it was
        signed is refused when the card is read (:class:`~deploykit.IntegrityError`). Under the ``eu-ai-act-high-risk`` and ``us-bank-mrm`` profiles,
        :func:`deploykit.deploy` needs an approval of the card being deployed.

        Parameters
        ----------
        reviewer : str
            Who decides: a name, ideally with an e-mail (``"Ana Ruiz <ana@bank.example>"``). The model's
            author (recorded when it was packaged) is refused.
        role : str
            The reviewer's role, e.g. ``"model validation"`` or ``"AI Act compliance officer"``.
        decision : {"approved", "rejected", "conditions"}
            ``"conditions"`` approves subject to the conditions written in ``notes``.
        notes : str, optional
            Why; required for ``"rejected"`` and ``"conditions"``.
        key : str or Path, optional
            The reviewer's Ed25519 private key (PEM) that signs the decision. Default:
            ``$DEPLOYKIT_SIGNING_KEY``, else this machine's signing key (made on first use). Whoever deploys
            must trust its public key (``deploykit keys trust``) for the decision to count.

        Returns
        -------
        dict
            The recorded decision: reviewer, role, decision, notes, card and model sha256, time, and
            ``signature`` (``{"algorithm": "ed25519", "key_id", "public_key", "value"}``).

        Raises
        ------
        ConfigError
            For an unknown decision, a missing reviewer or role, missing notes, the author as reviewer,
            a key that is not an Ed25519 private key, or a card that was not loaded from a package.

        Examples
        --------
        >>> pkg.card.approve(reviewer="Ana Ruiz <ana@bank.example>", role="model validation",
        ...                  decision="conditions", notes="re-validate after 3 months")  # doctest: +SKIP
        """
        from ..exceptions import ConfigError

        if self._package_dir is None:
            raise ConfigError(f"this card of {self.name} v{self.version} was not loaded from a package, so there is no "
                              "package to record the decision beside; use Package.load(...).card.approve(...) or "
                              f"`deploykit card approve {self.name} ...`")
        entry = _approvals.record(self._package_dir, self, reviewer=reviewer, role=role, decision=decision, notes=notes,
                                  key=key)
        self._approvals = _approvals.read(self._package_dir)
        return entry

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
                f"{self.profile}: {errors} errors, {len(findings) - errors} warnings · {self.review['status']}>")

    def _repr_html_(self) -> str:
        from ._render import summary_html

        return summary_html(self._view())
