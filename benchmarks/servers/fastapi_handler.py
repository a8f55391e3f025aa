"""A hand-written FastAPI + uvicorn handler: parse the JSON rows, build a DataFrame, call predict.

Run: ``BENCH_MODEL=model.pkl uvicorn fastapi_handler:app --loop uvloop --http httptools``.
The handler is a plain ``def`` so FastAPI runs the model call in its thread pool, as its docs advise
for blocking work; pydantic validates the body.
"""

import os
import pickle

import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

with open(os.environ["BENCH_MODEL"], "rb") as file:
    model = pickle.load(file)
COLUMNS = list(model.feature_names_in_)

app = FastAPI()


class Rows(BaseModel):
    instances: list[dict[str, float]]


@app.post("/predict")
def predict(body: Rows) -> dict:
    frame = pd.DataFrame(body.instances, columns=COLUMNS)
    return {"predictions": model.predict(frame).tolist()}
