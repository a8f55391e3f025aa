"""BentoML 1.4 adaptive batching, for models whose columns are not all numbers.

As ``bentoml_batching`` (an ``np.ndarray`` batchable input; rows as arrays), with the training dtypes
restored in the batch call (``trained_frame.py``): text arrives in the same array as numbers.
Run: ``BENCH_MODEL=model.pkl BENCH_DTYPES=dtypes.json bentoml serve bentoml_batching_mixed:Model``.
"""

import os
import pickle

import bentoml
import numpy as np
import pandas as pd
from trained_frame import COLUMNS, as_trained


@bentoml.service
class Model:
    def __init__(self) -> None:
        with open(os.environ["BENCH_MODEL"], "rb") as file:
            self.model = pickle.load(file)

    @bentoml.api(batchable=True)
    def predict(self, instances: np.ndarray) -> np.ndarray:
        return self.model.predict(as_trained(pd.DataFrame(instances, columns=COLUMNS)))
