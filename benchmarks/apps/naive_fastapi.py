"""
A naive FastAPI app, as its tutorial would write it: ``uvicorn naive_fastapi:app``.

The body is a JSON list of floats, checked by a type annotation; the view is a
plain ``def`` (FastAPI runs it on its thread pool, as its documentation advises
for blocking code) and returns a list, which FastAPI encodes.
"""

from __future__ import annotations

import numpy as np
from fastapi import Body, FastAPI
from models import from_env

model = from_env()
app = FastAPI()


@app.post("/predict")
def predict(x: list[float] = Body(...)) -> list[float]:  # noqa: B008 - FastAPI's idiom
    return model(np.asarray(x, dtype=np.float32)).tolist()
