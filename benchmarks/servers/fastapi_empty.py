"""The floor of a Python HTTP stack: a FastAPI endpoint that ignores its body and returns a constant."""

from fastapi import FastAPI

app = FastAPI()


@app.post("/predict")
async def predict() -> dict:
    return {"predictions": []}
