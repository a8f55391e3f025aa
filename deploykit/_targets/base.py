"""What a target is: where versions of a deployment run, behind the deployment's front.

A target starts a version (not yet given traffic), reports whether it is still running, gives its
logs, retires it after its requests are drained, and owns the deployment's front: the router that
keeps one URL for the deployment's whole life (:mod:`deploykit._front`). The release steps
(:mod:`deploykit._release`) drive every target through this interface alone; the front ends read
the target names and options from the registry (:mod:`deploykit._targets`). Adding a target is one
module implementing :class:`Target` and one registry entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Protocol

from ..exceptions import DeploymentError
from .front import FrontClient


class Version(Protocol):
    """One running version of a deployment."""

    version: str  # the package version it serves
    instance: str  # unique among the deployment's versions (a version may run twice during a redeploy)
    upstream: str  # where the front sends its requests
    direct_url: str  # where the control plane checks it (readiness, smoke prediction)

    def exited(self) -> int | None:
        """The exit code once it has stopped, else None."""

    def logs(self, tail: int | None = 200) -> str:
        """The last ``tail`` lines of its log (all of it with ``tail=None``)."""

    def follow(self, tail: int = 10) -> Iterator[str]:
        """The last ``tail`` lines, then each new line until the version stops."""


@dataclass
class Running:
    """A deployment found running on a target: what ``deploykit.deployments()`` lists."""

    name: str
    target: str
    front: FrontClient
    live: Version | None
    package: str | None  # folder of the package the live version serves, when known
    started: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def behind(cls, target: Any, front: FrontClient, extra: Callable[[Any], dict] | None = None) -> "Running | None":
        """What ``front`` serves on ``target`` (its live version asked of the target), or None when the
        front does not answer; ``extra(version)`` adds the target's own facts."""
        try:
            status = front.status()
        except DeploymentError:
            return None
        live = (status["routes"].get("live") or {}).get("instance")
        version = target.version(front, live) if live else None
        return cls(name=front.name, target=target.name, front=front, live=version,
                   package=version.package if version else None, started=version.started if version else None,
                   extra=extra(version) if extra and version else {})


class Target(Protocol):
    """A place where deployments run."""

    name: ClassVar[str]
    #: deploy() options only this target takes, with their defaults (e.g. docker's base_image)
    options: ClassVar[dict[str, Any]]
    #: its own release stages, run by :meth:`prepare` before "start" (the panel lays them out in advance)
    stages: ClassVar[tuple[str, ...]]
    description: ClassVar[str]
    #: what it can do beyond this protocol (absent: nothing). "scale": :meth:`scale` runs N replicas of a version;
    #: "public-port": its front's port is reachable on every interface whatever ``host`` says, so API keys are on
    #: by default; "rolls-out": the platform replaces versions itself (:class:`RolloutTarget`)
    capabilities: ClassVar[frozenset[str]]

    def check(self) -> None:
        """Raise an actionable error if this target cannot be used here (before anything is packaged)."""

    def prepare(self, pkg: Any, options: dict, progress: Any) -> dict:
        """Work before starting a version, reported as its own stages (docker: the image build);
        returns what :meth:`start` needs."""

    def front(self, name: str) -> FrontClient | None:
        """The running front of deployment ``name``, or None."""

    def create_front(self, name: str, *, port: int | None, host: str, options: dict) -> FrontClient:
        """Start the front of a new deployment, listening on ``host:port`` (a free port when None)."""

    def start(self, front: FrontClient, pkg: Any, *, env: dict, prepared: dict, options: dict) -> Version:
        """Start ``pkg`` as a new version of ``front``'s deployment, without traffic."""

    def version(self, front: FrontClient, instance: str) -> Version | None:
        """The handle of a running version, by instance (after a kernel restart, say)."""

    def retire(self, front: FrontClient, version: Version, *, drain: float) -> None:
        """Wait until the front has no request in flight to ``version`` (at most ``drain`` s), then stop it."""

    def tidy(self, front: FrontClient) -> None:
        """Remove what is left of versions the front stopped by itself (after a guardrail broke, or a canary
        promoted its candidate)."""

    def scale(self, front: FrontClient, version: Version, replicas: int) -> None:
        """Run ``replicas`` copies of ``version``, all of them serving once it returns (targets that "scale")."""

    def remove(self, name: str) -> None:
        """Stop every version and the front of deployment ``name``."""

    def running(self, name: str | None = None) -> list[Running]:
        """Deployments running on this target (all of them, or ``name``)."""


class RolloutTarget(Protocol):
    """A platform that replaces versions itself (Kubernetes' rolling update): capability ``"rolls-out"``.

    It has no front of deploykit's and skips the release steps: :func:`deploykit.deploy` calls
    :meth:`roll_out` instead, which returns the deployment's address and the version it serves, or raises
    with the platform still serving the previous version. It shares ``name``, ``options``, ``stages``,
    ``description``, :meth:`check`, :meth:`front`, :meth:`tidy`, :meth:`remove` and :meth:`running` with
    :class:`Target`; strategies other than ``replace`` need a front and are refused on it.
    """

    capabilities: ClassVar[frozenset[str]]

    def roll_out(self, pkg: Any, *, name: str, options: dict, steps: Any) -> tuple[Any, Version]:
        """Release ``pkg`` as deployment ``name``; (its address, with ``.url``; the version it serves)."""
