"""The Dask engine of :func:`deploykit.batch`: the package goes to each worker once and loads once there.

A worker plugin carries the package's ``model/`` folder (manifest and hashed artifacts, a few MB) as
one archive. Registering it sends it to every worker, which unpacks it into its local directory and
loads the model (sha256 checked) in the plugin's ``setup``: once per worker, however many chunks follow.
Tasks then find the loaded runtime on their worker. A worker that joins later gets the plugin too.

The driver reads the source and writes the output, so workers need no access to the files; they need
deploykit and the model's libraries installed (the versions in the package's ``requirements.lock``).
"""

from __future__ import annotations

import io
import tarfile
from typing import Any, Iterable, Iterator

from .exceptions import ConfigError

try:
    from distributed import WorkerPlugin
except ImportError:  # DaskScorer says how to install it
    WorkerPlugin = object


class BatchPlugin(WorkerPlugin):
    """A worker plugin holding one package: unpacked and loaded once on each worker, in ``setup``."""

    def __init__(self, archive: bytes, key: str) -> None:
        self.archive, self.key = archive, key
        self.name = f"deploykit-batch-{key}"
        self.runtime = None
        self.loads = 0

    def setup(self, worker) -> None:
        from pathlib import Path

        from ._runtime.model import ModelRuntime

        target = Path(worker.local_directory) / self.name
        with tarfile.open(fileobj=io.BytesIO(self.archive)) as tar:
            tar.extractall(target, filter="data")
        self.runtime = ModelRuntime.load(target / "model").loaded()
        self.loads += 1

    def teardown(self, worker) -> None:
        self.runtime = None


def _archive(model_dir) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(model_dir, arcname="model", filter=lambda info: None if "__pycache__" in info.name else info)
    return buffer.getvalue()


def score_on_worker(chunk, explain: bool, plugin: str):
    """A task: score one chunk with the runtime the plugin loaded on this worker."""
    from distributed import get_worker

    from ._runtime.batch import score_chunk

    return score_chunk(get_worker().plugins[plugin].runtime, chunk, explain=explain)


class DaskScorer:
    """Scores chunks on a Dask cluster, keeping two chunks per worker in flight."""

    engine = "dask"

    def __init__(self, pkg: Any, scheduler: Any = None, *, explain: bool = False) -> None:
        try:
            import distributed
        except ImportError:
            raise ConfigError("engine='dask' needs Dask distributed: pip install 'deploykit[batch]'") from None
        self.explain, self.owned = explain, []
        if isinstance(scheduler, distributed.Client):
            self.client = scheduler
        elif scheduler is None:
            cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                               dashboard_address=None)
            self.client = distributed.Client(cluster)
            self.owned = [self.client, cluster]
        else:
            self.client = distributed.Client(scheduler)
            self.owned = [self.client]
        key = pkg.manifest["artifacts"]["model"]["sha256"][:16]
        self.plugin = f"deploykit-batch-{key}"
        if not all(self.client.run(_has_plugin, self.plugin).values()):
            self.client.register_plugin(BatchPlugin(_archive(pkg.model_dir), key))

    def __call__(self, chunks: Iterable) -> Iterator:
        from distributed import as_completed

        window = 2 * max(1, len(self.client.scheduler_info()["workers"]))
        futures = as_completed()
        in_flight = 0
        try:
            for chunk in chunks:
                data = self.client.scatter(chunk)  # as data, not inside the task graph
                futures.add(self.client.submit(score_on_worker, data, self.explain, self.plugin, pure=False))
                in_flight += 1
                if in_flight >= window:
                    in_flight -= 1
                    yield next(futures).result()
            for future in futures:
                yield future.result()
        finally:
            for future in list(futures.futures):
                future.cancel()

    def loads(self) -> dict[str, int]:
        """How many times each worker loaded the package (1 each, however many chunks they scored)."""
        return self.client.run(_loads, self.plugin)

    def close(self) -> None:
        for thing in self.owned:
            thing.close()


def _has_plugin(name: str, dask_worker=None) -> bool:
    return name in dask_worker.plugins


def _loads(name: str, dask_worker=None) -> int:
    return dask_worker.plugins[name].loads
