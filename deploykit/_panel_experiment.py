"""The deploy panel's release strategies: deploy as a shadow, canary or A/B candidate, then compare,
promote or roll back from the panel. A front end only: it reads its fields into ``deploy()``'s keywords
and calls :func:`deploykit.promote`, :func:`deploykit.rollback` and :meth:`Deployment.compare`."""

from __future__ import annotations

from typing import Any, Callable

from ._templates import render

STRATEGIES = [("replace: the new version takes all traffic", "replace"),
              ("shadow: it gets a copy of each request", "shadow"),
              ("canary: it answers a share of requests", "canary"),
              ("A/B test: a share of the units", "ab")]


class ExperimentControls:
    """The strategy fields of the form, and the Compare / Promote / Roll back buttons once live."""

    def __init__(self, w, wide: dict, guarded: Callable) -> None:
        self.strategy = w.Dropdown(options=STRATEGIES, value="replace", description="strategy", **wide).add_class("dk-strategy")
        self.traffic = w.BoundedFloatText(value=0.1, min=0.0, max=1.0, step=0.05, description="candidate share",
                                          tooltip="canary and A/B: the share of requests (or units) the candidate answers",
                                          **wide).add_class("dk-traffic")
        self.compare_button = w.Button(description="Compare", icon="balance-scale").add_class("dk-compare")
        self.promote_button = w.Button(description="Promote candidate", icon="arrow-up").add_class("dk-promote")
        self.end_button = w.Button(description="Roll back candidate", icon="undo").add_class("dk-end")
        self.view = w.HTML().add_class("dk-experiment")
        self.compare_button.on_click(guarded(self._on_compare))
        self.promote_button.on_click(guarded(self._on_promote))
        self.end_button.on_click(guarded(self._on_end))
        self.bar = w.VBox([w.HBox([self.compare_button, self.promote_button, self.end_button]), self.view],
                          layout=w.Layout(display="none")).add_class("dk-experiment-box")
        self.deployment: Any = None
        self.on_change: Callable[[Any], None] = lambda dep: None

    @property
    def fields(self) -> list:
        return [self.strategy, self.traffic]

    def deploy_kwargs(self) -> dict:
        kind = self.strategy.value
        if kind == "replace":
            return {}
        return {"strategy": kind, **({"traffic": self.traffic.value} if kind in ("canary", "ab") else {})}

    def show(self, deployment: Any) -> None:
        """Show the controls while ``deployment`` has a candidate; hide them otherwise."""
        self.deployment = deployment
        candidate = deployment is not None and not deployment.stopped and deployment.candidate is not None
        self.bar.layout.display = "" if candidate else "none"
        self.promote_button.disabled = self.end_button.disabled = not candidate
        if candidate:
            self.view.value = render("display/panel_status.html.j2", state="live",
                                     text=f"v{deployment.candidate} runs as the candidate beside v{deployment.version}")

    def _on_compare(self) -> None:
        self.view.value = self.deployment.compare()._repr_html_()

    def _on_promote(self) -> None:
        from ._experiments import promote

        promoted = promote(self.deployment.name, verbose=False)
        self.show(promoted)
        self.on_change(promoted)

    def _on_end(self) -> None:
        from ._rollback import rollback

        kept = rollback(self.deployment.name, verbose=False)
        self.show(kept)
        self.on_change(kept)
