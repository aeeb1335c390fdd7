"""
docs/deployment/: the manifests parse, and every probe and port they name answers.

Docker cannot run here: the Dockerfile is checked statically (its CMD is a command
line modeldeploy's own parser accepts), and that command line, with the demo model
and a free port, is started as a real server that every probe of the Kubernetes
manifest is sent to.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from modeldeploy.cli import build_parser
from modeldeploy.cli import serve as serve_command
from tests import docs
from tests.integration.servers import request, serve

DEPLOYMENT = docs.DOCS / "deployment"


def dockerfile_instructions():
    """(instruction, argument) pairs of the Dockerfile, continuation lines joined."""
    text = (DEPLOYMENT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def cmd_argv():
    (argument,) = [arg for name, arg in dockerfile_instructions() if name == "CMD"]
    return json.loads(argument)  # the exec form: a JSON array


def manifests():
    return list(yaml.safe_load_all((DEPLOYMENT / "kubernetes.yaml").read_text()))


def deployment_container():
    (deployment,) = [m for m in manifests() if m["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def probes(container):
    return {
        kind: container[kind]["httpGet"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        if kind in container
    }


class TestDockerfile:
    def test_cmd_is_a_valid_modeldeploy_serve_command_line(self):
        argv = cmd_argv()
        assert argv[:2] == ["modeldeploy", "serve"]
        options = build_parser().parse_args(argv[1:])
        assert options.host == "0.0.0.0"  # reachable from outside the container
        assert options.spec == "myapp:service"

    def test_runs_as_a_non_root_user(self):
        instructions = dockerfile_instructions()
        (user,) = [arg for name, arg in instructions if name == "USER"]
        assert user not in ("root", "0")
        names = [name for name, _ in instructions]
        assert names.index("USER") < names.index("CMD")

    def test_slim_base_and_exposed_port(self):
        instructions = dict(dockerfile_instructions())
        assert re.fullmatch(r"python:3\.\d+-slim", instructions["FROM"])
        options = build_parser().parse_args(cmd_argv()[1:])
        assert instructions["EXPOSE"] == str(options.port)


class TestKubernetes:
    def test_probes_and_ports_match_the_image(self):
        deployment, container = deployment_container()
        options = build_parser().parse_args(cmd_argv()[1:])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": options.port}
        for probe in probes(container).values():
            assert ports.get(probe["port"], probe["port"]) == options.port
        assert probes(container)["livenessProbe"]["path"] == "/v2/health/live"
        assert probes(container)["readinessProbe"]["path"] == "/v2/health/ready"
        (service,) = [m for m in manifests() if m["kind"] == "Service"]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)

    def test_grace_period_covers_pre_stop_and_graceful_shutdown(self):
        deployment, container = deployment_container()
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        (pre_stop,) = re.findall(r"sleep\((\d+(?:\.\d+)?)\)", " ".join(command))
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > float(pre_stop) + serve_command._GRACE_S

    def test_runs_as_the_image_user(self):
        deployment, _ = deployment_container()
        context = deployment["spec"]["template"]["spec"]["securityContext"]
        (user,) = [arg for name, arg in dockerfile_instructions() if name == "USER"]
        assert context["runAsNonRoot"] is True and str(context["runAsUser"]) == user


@pytest.mark.integration
def test_every_probe_answers_on_a_server_started_with_the_image_command():
    """The CMD's options, the demo model instead of myapp, loopback and a free port."""
    args = cmd_argv()[2:]
    args[args.index("myapp:service")] = "modeldeploy.demo:service"
    for option in ("--host", "--port"):
        index = args.index(option)
        del args[index : index + 2]
    server = serve(*args, "--host", "127.0.0.1")
    try:
        _, container = deployment_container()
        for kind, probe in probes(container).items():
            status, _, _ = request(server.port, "GET", probe["path"])
            assert status == 200, f"{kind} {probe['path']} answered {status}"
        status, headers, _ = request(server.port, "GET", "/metrics")  # the scrape annotation
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert server.terminate() == 0  # SIGTERM: a graceful stop
    finally:
        server.kill()
