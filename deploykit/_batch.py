"""``deploykit.batch``: score a table with a package, in this process or on a Dask cluster.

The scoring itself is the served runtime's (:mod:`deploykit._runtime.batch`), so a batch run checks
rows exactly as the service does and the image can do the same (``docker run IMAGE batch IN OUT``).
This side picks the engine, turns the runtime's errors into deploykit's, and records the run in the
package's model card change log.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from .exceptions import ConfigError, SchemaError

ENGINES = ("local", "dask")


def batch(name_or_package: Any, source: str | Path, destination: str | Path, *, engine: str = "local",
          scheduler: Any = None, explain: bool = False, chunk_rows: int = 100_000, version: str | None = None,
          workers: int = 1, progress: bool = True):
    """Score a CSV or Parquet table with a packaged model, validating every row as the service does.

    Parameters
    ----------
    name_or_package : str, Path or Package
        A :class:`~deploykit.Package`, or a saved package's name (newest version unless ``version``) or folder.
    source : str or Path
        A ``.csv`` or ``.parquet`` file, or a folder of ``.parquet`` parts.
    destination : str or Path
        A ``.csv`` or ``.parquet`` file, or a folder (no suffix) to fill with ``part-NNNNN.parquet`` files.
        The output holds every column of the source for the rows that passed, then ``row`` (the row's
        number in the source, from 0), ``prediction`` and, with ``explain``, ``shap_<column>`` and
        ``shap_base_value``. Rows that failed the schema go to ``<destination>.rejects.csv|parquet``
        with ``row``, ``column`` and ``problem``.
    engine : {"local", "dask"}
        ``"local"`` scores on this machine (see ``workers``). ``"dask"`` sends the package to each Dask
        worker once, loads it once per worker, and scores chunks there.
    scheduler : str or distributed.Client, optional
        Dask only: a scheduler address (``"tcp://10.0.0.5:8786"``) or a Client; default a LocalCluster
        on this machine. Workers need deploykit and the model's libraries installed.
    explain : bool
        Add SHAP values per row (the package must have been made with ``explain=True``). Slow: SHAP costs
        milliseconds per row.
    chunk_rows : int
        Rows per chunk: the unit of work, of progress and of resuming.
    version : str, optional
        The package version when ``name_or_package`` is a name.
    workers : int
        Local engine: ``1`` (default) scores in this process, two chunks at a time in threads, which
        covers two cores for models whose ``predict`` releases the GIL (scikit-learn's trees, XGBoost,
        LightGBM: measured on a million rows, this beat two processes by 1.9×); ``N > 1`` starts N
        processes that each load the package once (a few seconds), for a model whose ``predict`` holds
        the GIL (plain Python) on a machine with cores to spare.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    BatchResult
        Counts (``rows``, ``scored``, ``rejected_rows``, ``chunks``, ``resumed_chunks``), paths and timing.

    Run it again after an interruption with the same arguments: finished chunks are skipped and the
    output is the same as an uninterrupted run's.

    Examples
    --------
    >>> result = deploykit.batch("churn", "customers.parquet", "scored.parquet")   # doctest: +SKIP
    >>> result.rows == result.scored + result.rejected_rows                        # doctest: +SKIP
    True
    """
    from ._runtime import batch as runner
    from ._runtime.errors import InputError

    if importlib.util.find_spec("pyarrow") is None:
        raise ConfigError("batch scoring reads and writes tables with pyarrow: pip install 'deploykit[batch]'")
    pkg = _package(name_or_package, version)
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r}: use 'local' or 'dask'")
    if explain and not pkg.manifest.explainer:
        raise ConfigError(f"{pkg.name} v{pkg.version} was packaged with explain=False; package it with "
                          "explain=True to add SHAP columns")
    if workers < 1:
        raise ConfigError(f"workers={workers}: give 1 (this process) or more processes")
    if scheduler is not None and engine != "dask":
        raise ConfigError("scheduler= is for engine='dask'; pass engine='dask' too")
    identity = {"name": pkg.name, "version": str(pkg.version), "model_sha256": pkg.manifest.model.sha256}
    try:
        with _scorer(pkg, engine, scheduler, explain, workers) as scorer:
            result = runner.run(scorer, source, destination, schema=pkg.schema, package=identity, chunk_rows=chunk_rows,
                                explain=explain, progress=progress, engine=engine)
    except InputError as exc:
        raise SchemaError(str(exc)) from None
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(str(exc)) from None
    from ._card._runs import record_batch_run

    record_batch_run(pkg.path, result.to_dict())
    return result


def _package(name_or_package: Any, version: str | None):
    from ._package import Package

    if isinstance(name_or_package, Package):
        return name_or_package
    return Package.load(name_or_package, version=version)


class _scorer:
    """The engine's scorer, with whatever it holds (a Dask client, a cluster) closed afterwards."""

    def __init__(self, pkg, engine: str, scheduler: Any, explain: bool, workers: int) -> None:
        self.args = (pkg, engine, scheduler, explain, workers)
        self.closer = None

    def __enter__(self):
        pkg, engine, scheduler, explain, workers = self.args
        if engine == "local" and workers > 1:
            from ._runtime.batch import ProcessScorer

            return ProcessScorer(pkg.model_dir, explain=explain, workers=workers)
        if engine == "local":
            from ._runtime.batch import LocalScorer
            from ._runtime.model import ModelRuntime

            return LocalScorer(ModelRuntime.load(pkg.model_dir), explain=explain)
        from ._batch_dask import DaskScorer

        scorer = DaskScorer(pkg, scheduler, explain=explain)
        self.closer = scorer.close
        return scorer

    def __exit__(self, *exc) -> None:
        if self.closer is not None:
            self.closer()
