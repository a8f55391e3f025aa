"""BentoML 1.4 with adaptive batching: ``batchable=True`` on an ``np.ndarray`` input, default batch limits.

The input is an array, not a DataFrame: BentoML 1.4.40's batch dispatcher fails on batchable DataFrame
inputs (``get_batch_size`` returns the frame's shape tuple; requests hang 60 s, then 503). The body is
``{"instances": [[f0, f1, ...], ...]}``; the rows become a DataFrame with the training columns inside the
batch call, so the model sees what it was fitted on.
"""

import os
import pickle

import bentoml
import numpy as np
import pandas as pd


@bentoml.service
class Model:
    def __init__(self) -> None:
        with open(os.environ["BENCH_MODEL"], "rb") as file:
            self.model = pickle.load(file)
        self.columns = list(self.model.feature_names_in_)

    @bentoml.api(batchable=True)
    def predict(self, instances: np.ndarray) -> np.ndarray:
        return self.model.predict(pd.DataFrame(instances, columns=self.columns))
