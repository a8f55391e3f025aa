"""The floor of BentoML's own request path: an ``@bentoml.api`` that returns a constant.

``workers`` comes from ``$BENCH_WORKERS`` (default 1).
"""

import os

import bentoml


@bentoml.service(workers=int(os.environ.get("BENCH_WORKERS", "1")))
class Empty:
    @bentoml.api
    def predict(self) -> dict:
        return {"predictions": []}
