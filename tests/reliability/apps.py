"""Applications the reliability suite serves: the demo model as Flask and WSGI apps.

``modeldeploy serve modeldeploy.demo:service`` covers uvicorn and gunicorn; the Flask
adapter runs on gunicorn directly, as its users run it:
``gunicorn -k modeldeploy.servers.gunicorn.ThreadWorker tests.reliability.apps:flask_app``.
"""

from __future__ import annotations

import flask

from modeldeploy.adapters.flask import blueprint
from modeldeploy.demo import service

flask_app = flask.Flask(__name__)
flask_app.register_blueprint(blueprint(service))
