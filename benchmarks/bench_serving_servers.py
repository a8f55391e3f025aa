"""The servers of the serving benchmark: how each is started, reached and stopped.

Every server is started on a free port of 127.0.0.1 in its own process group, and is "up" at its
first good (2xx) answer to a 1-row ``/predict`` request, polled every 25 ms from the moment its
process was spawned: that interval is the cold start. deploykit is a black box started with
``deploykit.deploy(...)``; its cold start runs from deploykit's ``start`` progress event (just before
it spawns ``bentoml serve``) to the same first good answer, so packaging is not counted in it.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import bench_serving_procs as procs
from bench_serving_models import Fitted

SERVERS_DIR = Path(__file__).resolve().parent / "servers"
READY_TIMEOUT = 180.0


@dataclass
class Context:
    """What every server start needs: the scratch folder, the environment and the model files."""

    tmp: Path
    env: dict
    mlflow_python: str | None
    model_files: dict = field(default_factory=dict)
    mlflow_models: dict = field(default_factory=dict)
    mlflow_error: str | None = None
    packages: dict = field(default_factory=dict)  # deploykit Package per (model, server), for restarts

    def model_file(self, fitted: Fitted) -> Path:
        import pickle

        if fitted.key not in self.model_files:
            path = self.tmp / f"{fitted.key}.pkl"
            path.write_bytes(pickle.dumps(fitted.model))
            self.model_files[fitted.key] = path
        return self.model_files[fitted.key]

    def log(self, name: str) -> Path:
        path = self.tmp / "logs" / f"{name}.log"
        path.parent.mkdir(exist_ok=True)
        return path


@dataclass
class Running:
    """A started server. ``cold_start_s`` is spawn to first good answer."""

    base_url: str
    pgid: int
    cold_start_s: float
    stop: Callable[[], None]
    log_path: Path | None = None
    info: dict = field(default_factory=dict)


@dataclass
class Spec:
    key: str
    label: str
    body_kind: str  # "records" {"instances": [{...}]}, "arrays" {"instances": [[...]]}, "mlflow" {"dataframe_records": ...}
    start: Callable[[Context, Fitted], Running]
    routes: dict = field(default_factory=lambda: {"predict": "/predict"})
    floor: bool = False  # an empty endpoint: answers do not depend on the model
    deploykit: bool = False
    start_cost_s: float = 8.0  # a typical start (deploykit's: with packaging), settling and stop, for the time budget
    restart_cost_s: float = 0.0  # the same without packaging; 0: as start_cost_s
    variant: dict = field(default_factory=dict)  # deploykit: the package keywords this server passes
    workers: int = 1  # deploykit: the version's worker processes (deploy's ``workers=``)
    direct: bool = False  # deploykit: load goes to the version's own port, past the deployment's front

    def __post_init__(self) -> None:
        self.restart_cost_s = self.restart_cost_s or self.start_cost_s


# -- plain processes ---------------------------------------------------------------------------------
def _start_process(ctx: Context, fitted: Fitted, name: str, command: list[str], route: str, body: bytes,
                   env: dict | None = None, cwd: Path = SERVERS_DIR) -> Running:
    log_path = ctx.log(f"{fitted.key}-{name}")
    started = time.monotonic()
    popen = procs.spawn(command, env={**ctx.env, **(env or {})}, cwd=cwd, log_path=log_path)
    base = command[command.index("--port") + 1] if "--port" in command else command[command.index("-p") + 1]
    base_url = f"http://127.0.0.1:{base}"
    try:
        first = procs.wait_first_answer(base_url + route, body, popen=popen, timeout=READY_TIMEOUT)
    except BaseException as exc:
        procs.stop_group(popen.pid)
        raise RuntimeError(f"{name} did not start: {exc}\n{procs.log_tail(log_path)}") from None
    return Running(base_url, popen.pid, first - started, lambda: procs.stop_group(popen.pid), log_path)


def _uvicorn(module: str, workers: int) -> Callable[[Context, Fitted], Running]:
    def start(ctx: Context, fitted: Fitted) -> Running:
        command = [sys.executable, "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1", "--port",
                   str(procs.free_port()), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                   "--workers", str(workers)]
        env = {"BENCH_MODEL": str(ctx.model_file(fitted))}
        return _start_process(ctx, fitted, f"{module}-{workers}w", command, "/predict", fitted.body("records", 1), env)

    return start


def _bentoml(module: str, body_kind: str, workers: int = 1) -> Callable[[Context, Fitted], Running]:
    def start(ctx: Context, fitted: Fitted) -> Running:
        service = "Empty" if "empty" in module else "Model"
        command = [sys.executable, "-m", "bentoml", "serve", f"{module}:{service}", "--working-dir", str(SERVERS_DIR),
                   "--host", "127.0.0.1", "--port", str(procs.free_port())]
        env = {"BENCH_MODEL": str(ctx.model_file(fitted)), "BENCH_WORKERS": str(workers)}
        return _start_process(ctx, fitted, f"{module}-{workers}w", command, "/predict", fitted.body(body_kind, 1), env)

    return start


def save_mlflow_models(ctx: Context, fitted: list[Fitted]) -> None:
    """Write every model in MLflow's format, in one process (importing mlflow takes seconds)."""
    import subprocess

    if ctx.mlflow_python is None:
        return
    pairs = []
    for f in fitted:
        ctx.mlflow_models[f.key] = ctx.tmp / f"mlflow-{f.key}"
        pairs += [str(ctx.model_file(f)), str(ctx.mlflow_models[f.key])]
    proc = subprocess.run([ctx.mlflow_python, str(SERVERS_DIR / "mlflow_save.py"), *pairs], env=ctx.env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        ctx.mlflow_models.clear()
        ctx.mlflow_error = f"could not save the models for mlflow: {proc.stderr[-1500:]}"


def _mlflow(ctx: Context, fitted: Fitted) -> Running:
    if ctx.mlflow_python is None:
        raise RuntimeError("mlflow is not installed: pip install -r benchmarks/requirements.txt")
    if fitted.key not in ctx.mlflow_models:
        raise RuntimeError(ctx.mlflow_error or "the model was not saved for mlflow")
    model_dir = ctx.mlflow_models[fitted.key]
    command = [ctx.mlflow_python, "-m", "mlflow", "models", "serve", "-m", str(model_dir), "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(procs.free_port())]
    # `mlflow models serve` runs `uvicorn` from PATH: put the interpreter's own bin folder first
    env = {"PATH": f"{Path(ctx.mlflow_python).parent}{os.pathsep}{ctx.env.get('PATH', '')}"}
    return _start_process(ctx, fitted, "mlflow", command, "/invocations", fitted.body("mlflow", 1), env, cwd=ctx.tmp)


# -- deploykit, as a black box ------------------------------------------------------------------------
def fast_path_keyword() -> tuple[str, Any] | None:
    """The keyword of ``deploykit.package`` that chooses the serving path, with its default, if there is one."""
    import deploykit

    for name, parameter in inspect.signature(deploykit.package).parameters.items():
        if "fast" in name or "compil" in name:
            return name, parameter.default
    return None


def _deploykit(variant: dict, workers: int = 1, direct: bool = False) -> Callable[[Context, Fitted], Running]:
    """``variant`` holds the package keywords of this server (empty for deploykit's defaults); ``workers``
    the version's processes; ``direct`` sends the load to the version's own port instead of the front."""

    def start(ctx: Context, fitted: Fitted) -> Running:
        import deploykit

        suffix = "".join(f"-{k.replace('_', '')}{int(bool(v))}" for k, v in variant.items())
        name = f"bench-{fitted.key}{suffix}-w{workers}{'-direct' if direct else ''}"
        port = procs.free_port()
        base_url = f"http://127.0.0.1:{port}"
        poller = procs.FirstAnswer(base_url + "/predict", fitted.body("records", 1), READY_TIMEOUT)
        marks: dict[tuple, float] = {}

        def listener(event: dict) -> None:
            if "stage" in event:
                marks.setdefault((event["stage"], event["state"]), time.monotonic())
                if event["stage"] == "start" and event["state"] == "start" and not poller.ident:
                    poller.start()  # deploykit is about to spawn `bentoml serve`

        package = ctx.packages.get((fitted.key, suffix))  # one package per model and variant, whatever the workers
        called = time.monotonic()
        options = {"target": "local", "name": name, "port": port, "verbose": False, "progress": listener,
                   "workers": workers}
        try:
            if package is None:
                dep = deploykit.deploy(fitted.model, X_train=fitted.X_train, y_train=fitted.y_train,
                                       X_test=fitted.X_test, y_test=fitted.y_test, **variant, **options)
                ctx.packages[(fitted.key, suffix)] = dep.package
            else:  # a restart: the same package, no packaging
                dep = deploykit.deploy(package, **options)
        except BaseException:
            poller.cancel()
            raise
        procs.register_group(dep.handle.pid)
        poller.join(timeout=10)
        if poller.at is None:
            _stop_deployment(dep)
            raise RuntimeError(f"deploykit answered its own smoke test but not ours: {poller.last_error}")
        info = {"package_s": marks.get(("start", "start"), called) - called if package is None else None,
                "serving": dep.package.manifest.get("serving"), "package_version": dep.version,
                "log_path": str(getattr(dep.handle, "log_path", ""))}
        if direct:
            info["front_url"], base_url = base_url, dep.handle.upstream
        return Running(base_url, dep.handle.pid, poller.at - marks[("start", "start")], lambda: _stop_deployment(dep),
                       getattr(dep.handle, "log_path", None), info)

    return start


def _stop_deployment(dep) -> None:
    try:
        dep.stop()
    finally:
        if procs.group_alive(dep.handle.pid):
            procs.stop_group(dep.handle.pid)
        procs._GROUPS.discard(dep.handle.pid)


# -- the catalogue --------------------------------------------------------------------------------------
def catalogue() -> dict[str, Spec]:
    specs = [
        Spec("deploykit", "deploykit", "records", _deploykit({}),
             {"predict": "/predict", "explain": "/explain"}, deploykit=True, start_cost_s=25, restart_cost_s=11),
        Spec("deploykit-2w", "deploykit, 2 workers", "records", _deploykit({}, workers=2), deploykit=True,
             start_cost_s=25, restart_cost_s=12, workers=2),
        Spec("deploykit-direct", "deploykit, past its front", "records", _deploykit({}, direct=True), deploykit=True,
             start_cost_s=25, restart_cost_s=11, direct=True),
        Spec("deploykit-2w-direct", "deploykit, 2 workers, past its front", "records",
             _deploykit({}, workers=2, direct=True), deploykit=True, start_cost_s=25, restart_cost_s=12, workers=2,
             direct=True),
        Spec("fastapi", "FastAPI+uvicorn, 1 worker", "records", _uvicorn("fastapi_handler", 1), start_cost_s=5),
        Spec("fastapi-2w", "FastAPI+uvicorn, 2 workers", "records", _uvicorn("fastapi_handler", 2), start_cost_s=5),
        Spec("bentoml", "BentoML defaults", "records", _bentoml("bentoml_default", "records")),
        Spec("bentoml-batching", "BentoML adaptive batching", "arrays", _bentoml("bentoml_batching", "arrays")),
        Spec("mlflow", "mlflow models serve", "mlflow", _mlflow, {"predict": "/invocations"}, start_cost_s=8),
        Spec("fastapi-empty", "empty FastAPI endpoint", "records", _uvicorn("fastapi_empty", 1), floor=True, start_cost_s=3),
        Spec("bentoml-empty", "empty @bentoml.api", "records", _bentoml("bentoml_empty", "records"), floor=True),
        Spec("bentoml-empty-2w", "empty @bentoml.api, 2 workers", "records",
             _bentoml("bentoml_empty", "records", workers=2), floor=True),
        Spec("bentoml-asgi-empty", "empty Starlette route in BentoML (asgi_app)", "records",
             _bentoml("bentoml_asgi_empty", "records"), floor=True),
    ]
    keyword = fast_path_keyword()
    if keyword is not None:
        name, default = keyword
        other = not default if isinstance(default, bool) else False
        specs.insert(1, Spec(f"deploykit-{name}={other}", f"deploykit ({name}={other})", "records",
                             _deploykit({name: other}), {"predict": "/predict", "explain": "/explain"}, deploykit=True,
                             start_cost_s=25, restart_cost_s=11, variant={name: other}))
    return {spec.key: spec for spec in specs}


def probe(spec: Spec, running: Running, fitted: Fitted) -> dict:
    """One 1-row and one 100-row /predict: the serving-path header, and whether the labels are right."""
    from bench_serving_models import predictions_of

    out: dict = {}
    url = running.base_url + spec.routes["predict"]
    for n in (1, 100):
        status, headers, body = procs.post(url, fitted.body(spec.body_kind, n))
        out[f"path_{n}"] = headers.get("x-deploykit-path", "unknown") if spec.deploykit else None
        if spec.floor:
            continue
        try:
            got = predictions_of(spec.body_kind, json.loads(body))
        except ValueError:
            got = None
        out[f"correct_{n}"] = status == 200 and got == fitted.expected(n)
    if not spec.floor:
        out["correct"] = out["correct_1"] and out["correct_100"]
    return out
