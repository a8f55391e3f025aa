"""Governance model cards: built when a model is packaged, validated against profiles, served at /card.

This is the notebook side (fairlearn, matplotlib and the Jinja templates are imported here, lazily);
the service only reads the finished files through :class:`deploykit._runtime.model.ModelRuntime`.

    _fields       the user's fields (card={...}) and config defaults
    _data         dataset fingerprints, feature table, label balance, sensitive features
    _evaluate     held-out metrics with bootstrap confidence intervals
    _fairness     group metrics with fairlearn
    _importance   global mean |SHAP| ranking
    _provenance   steps and hyperparameters, git commit, notebook hash
    _changelog    differences from the previous version
    _plots        matplotlib figures as inline PNG
    _profiles     validation profiles and their rules
    _mct          the Model Card Toolkit v0.0.2 section
    _build        assembling the JSON envelope
    _render       HTML and Markdown from templates/card/
    _modelcard    the public ModelCard
    _attach       writing the card into a package; the deploy-time gate
"""

from ._modelcard import ModelCard
from ._profiles import PROFILES, Finding

__all__ = ["PROFILES", "Finding", "ModelCard"]
