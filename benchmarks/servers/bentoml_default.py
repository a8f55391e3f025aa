"""BentoML 1.4 with its defaults: one ``@bentoml.api`` taking the rows as a list of dicts, no batching.

Run: ``BENCH_MODEL=model.pkl bentoml serve bentoml_default:Model``; the body is ``{"instances": [{...}]}``.
"""

import os
import pickle

import bentoml
import pandas as pd


@bentoml.service
class Model:
    def __init__(self) -> None:
        with open(os.environ["BENCH_MODEL"], "rb") as file:
            self.model = pickle.load(file)
        self.columns = list(self.model.feature_names_in_)

    @bentoml.api
    def predict(self, instances: list[dict[str, float]]) -> list:
        return self.model.predict(pd.DataFrame(instances, columns=self.columns)).tolist()
