"""Save pickled scikit-learn models as MLflow models: ``python mlflow_save.py MODEL.pkl OUT_DIR [MODEL.pkl OUT_DIR ...]``.

Run with the interpreter that will serve them (``mlflow models serve --env-manager local``), which may
be a separate virtual environment; one process saves them all, since importing mlflow is slow. MLflow 3
writes scikit-learn models with skops; the tree types a skops file needs are trusted explicitly, as
MLflow asks.
"""

import pickle
import sys

import mlflow.sklearn
import pandas as pd
import skops.io
from mlflow.models import infer_signature

for source, target in zip(sys.argv[1::2], sys.argv[2::2]):
    with open(source, "rb") as file:
        model = pickle.load(file)
    example = pd.DataFrame([[0.0] * len(model.feature_names_in_)], columns=list(model.feature_names_in_))
    mlflow.sklearn.save_model(
        model,
        target,
        signature=infer_signature(example, model.predict(example)),
        skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(model)),
    )
