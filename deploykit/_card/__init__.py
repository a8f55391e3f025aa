"""Governance model cards: built when a model is packaged, validated against profiles, served at /card.

This is the notebook side (fairlearn, matplotlib and the Jinja templates are imported here, lazily);
the service only reads the finished files through :class:`deploykit._runtime.model.ModelRuntime`.

    _fields       the user's fields (card={...}) and config defaults
    _data         dataset fingerprints, row overlap, feature table, label balance, sensitive features
    _evaluate     metrics at the decision settings with bootstrap intervals; paired differences
    _outcomes     calibration; benchmarks (dummy, baseline, previous version) on the same rows
    _fairness     group metrics with fairlearn, their bootstrap intervals, gaps and alarms
    _importance   global mean |SHAP| ranking
    _provenance   steps and hyperparameters, seeds, the lock, git commit, notebook hash, the author
    _changelog    differences from the previous version
    _hints        what the card notices on its own
    _operations   monitoring and logging facts from structured data
    _plots        matplotlib figures as inline PNG
    _content      rules that read what fields say (placeholders, self-validation, ...)
    _profiles     validation profiles and their rules
    _approvals    review decisions beside the package; the approval gate
    _mct          the Model Card Toolkit v0.0.2 section
    _build        assembling the JSON envelope
    _verdict      the first page: verdict and glossary
    _compat       rendering cards made before the review workflow
    _render       HTML and Markdown from templates/card/
    _modelcard    the public ModelCard
    _attach       writing the card into a package; the deploy-time gate
"""

from ._modelcard import ModelCard
from ._profiles import PROFILES, Finding

__all__ = ["PROFILES", "Finding", "ModelCard"]
