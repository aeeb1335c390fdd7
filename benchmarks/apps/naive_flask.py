"""
A naive Flask app, as its tutorial would write it: ``gunicorn naive_flask:app``.

``request.get_json()``, the model, ``jsonify`` of a list.
"""

from __future__ import annotations

import numpy as np
from flask import Flask, jsonify, request
from models import from_env

model = from_env()
app = Flask(__name__)


@app.post("/predict")
def predict():
    x = np.asarray(request.get_json(), dtype=np.float32)
    return jsonify(model(x).tolist())
