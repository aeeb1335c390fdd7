"""Write the figures of the last reliability run into ``docs/reliability.md``.

``make reliability`` runs the suite (which leaves one JSON file per case and a JUnit
report in ``tests/reliability/results/``), then this script, which replaces what lies
between the ``figures`` markers of the page.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import xml.etree.ElementTree as ET  # our own pytest's JUnit report
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = Path(os.environ.get("MODELDEPLOY_RELIABILITY_RESULTS", HERE / "results"))
PAGE = HERE.parents[1] / "docs" / "reliability.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def outcomes() -> str:
    junit = RESULTS / "junit.xml"
    if not junit.exists():
        return "No JUnit report: run `make reliability`."
    rows = []
    for case in ET.parse(junit).iter("testcase"):  # our own file
        name = case.get("name", "")
        module = case.get("classname", "").rsplit(".", 1)[-1]
        if case.find("failure") is not None or case.find("error") is not None:
            result = "**failed**"
        elif case.find("skipped") is not None:
            result = "skipped"
        else:
            result = "passed"
        rows.append([f"`{module}`", f"`{name}`", result, f"{float(case.get('time', 0)):.1f}"])
    return table(["module", "case", "result", "seconds"], rows)


def slow_clients() -> str:
    rows = []
    for server in ("uvicorn", "gunicorn", "flask-gunicorn"):
        r = load(f"slow-clients-{server}")
        if r is None:
            continue
        o, alone = r["ordinary"], r.get("alone", {})
        rows.append([
            server,
            (f"{r['stalled_bodies']} stalled, {r['header_drippers']} dripping, "
            f"{r['idle_connections']} idle"),
            f"{r.get('stalled_cut', '')} cut by {r['stalled_closed_max_s']} s (408)",
            f"{r.get('drippers_cut', '')} cut by {r['drippers_closed_max_s']} s",
            f"{r['idle_closed_max_s']} s",
            f"{o['requests']} ({o['errors']} failed)",
            o["p50_ms"],
            f"**{o['p99_ms']}**",
            o.get("max_ms", ""),
            alone.get("p99_ms", ""),
            r.get("load_average", ""),
        ])  # fmt: skip
    return table(
        ["server", "hostile clients at a time", "stalled bodies", "drippers",
         "idle closed by", "requests under attack", "p50 ms", "p99 ms", "max ms",
         "p99 ms, no attack", "load average"],
        rows,
    )  # fmt: skip


def memory() -> str:
    r = load("memory")
    if r is None:
        return ""
    rows = [
        [shape, f"{v['body_mib']} MiB", f"{v['peak_over_limit']} x"]
        for shape, v in r["shapes"].items()
    ]
    rows.append([
        f"floats, {r['refused_floats_body_mib']} MiB (refused in {r['refused_in_ms']} ms)",
        "refused",
        f"{r['refused_peak_over_limit']} x",
    ])  # fmt: skip
    head = (
        f"Body limit {r['limit_mib']} MiB, `max_memory` = {r['memory_factor']} x the limit. "
        "For each shape, the largest body the check lets through, and the peak RSS growth "
        "of a fresh process while decoding it (the body itself excluded), over the limit:\n\n"
    )
    return head + table(["body of", "largest accepted", "peak RSS over the limit"], rows)


def overload() -> str:
    rows = []
    for server in ("uvicorn", "gunicorn"):
        r = load(f"overload-{server}")
        if r is None:
            continue
        rows.append([
            server,
            f"{r['capacity_rps']} req/s",
            f"{r['offered_rps']} req/s ({r['offered_over_capacity']} x)",
            f"{r['accepted_rps']} req/s ({r['accepted_over_capacity']} x)",
            r["rejected"],
            f"{r['rejection_p50_ms']} / {r['rejection_p99_ms']}",
            r["accepted_p99_ms"],
            f"{r['rss_before_mib']} -> {r['rss_peak_mib']} MiB",
        ])  # fmt: skip
    return table(
        ["server", "capacity (1 client)", "offered", "accepted", "503s",
         "503 p50 / p99 ms", "200 p99 ms", "RSS before -> peak"],
        rows,
    )  # fmt: skip


def faults() -> str:
    rows = []
    hang = load("fault-hang")
    if hang:
        rows.append(["model hangs past its 0.5 s deadline",
                     f"504 `deadline_exceeded` after {hang['answered_in_s']} s"])  # fmt: skip
    leak = load("fault-leak")
    if leak:
        rows.append([
            (f"model leaks 256 KiB a request, {leak['requests']} requests "
            f"({leak['leaked_mib_total']} MiB), gunicorn `--max-requests {leak['max_requests']}`"),
            (f"worker RSS {leak['worker_rss_first_mib']} -> at most "
            f"{leak['worker_rss_peak_mib']} MiB; {leak['failed']} failed"),
        ])  # fmt: skip
    for server in ("gunicorn", "uvicorn"):
        r = load(f"fault-sigkill-{server}")
        if r:
            rows.append([
                f"SIGKILL to one of 2 {server} workers, {r['clients']} clients",
                (f"{r['failed']} failed of {r['failed'] + r['answered']}; "
                f"replaced in {r['replaced_in_s']} s"),
            ])  # fmt: skip
    return table(["fault", "result"], rows)


def shutdown() -> str:
    rows = []
    for server in ("uvicorn", "gunicorn"):
        r = load(f"shutdown-{server}")
        if r:
            rows.append([
                server, r["clients"], r["answered_200"], r["answered_503"],
                r["refused_at_connect"], f"**{r['lost']}**", r["not_ready_after_s"],
                r["exited_after_s"], r["grace_s"],
            ])  # fmt: skip
    return table(
        ["server", "clients", "200", "503", "refused at connect", "lost",
         "not ready after (s)", "exited after (s)", "grace (s)"],
        rows,
    )  # fmt: skip


def soak() -> str:
    r = load("soak")
    if r is None:
        return ""
    return table(
        ["seconds", "requests", "p99 ms", "RSS after warm-up -> end", "growth", "fds", "threads"],
        [[r["seconds"], r["requests"], r["p99_ms"],
          f"{r['rss_warm_mib']} -> {r['rss_last_mib']} MiB", f"{r['rss_growth_pct']} %",
          f"{r['fd_growth']:+}", f"{r['thread_growth']:+}"]],
    )  # fmt: skip


def machine() -> str:
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("uvicorn", "gunicorn", "orjson")
    )
    return (
        f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} on {os.cpu_count()} CPUs "
        f"({platform.machine()}, shared with other work), Python "
        f"{platform.python_version()}, {versions}."
    )


def main() -> int:
    sections = [
        machine(),
        "### Every case\n\n" + outcomes(),
        "### Slow and stalled clients\n\nHeader and body timeouts of 1 s, gunicorn with 4 "
        "threads. Two ordinary clients send V2 inference requests to the demo model, 60 a "
        "second each on new connections, each latency counted from when the request was due; "
        "stretches of 2.5 s under attack (each hostile client the server closes comes back at "
        "once) alternate with stretches of 1.5 s without, which measure what the machine "
        "itself allows (last column but one; the load average is the machine's, shared with "
        "other work). The target is a p99 under 50 ms under attack.\n\n" + slow_clients(),
        "### Memory per request\n\n" + memory(),
        "### Overload\n\nThe `slow` model takes 20 ms a request, one at a time, and queues "
        "4 more; 30 clients send as fast as they are answered. Latencies are client-side, "
        "from 30 Python threads on the same machine.\n\n" + overload(),
        "### Faults\n\n" + faults(),
        "### Graceful shutdown\n\nSIGTERM to `modeldeploy serve` while 8 clients send "
        "200 ms requests; counted client-side.\n\n" + shutdown(),
        "### Soak\n\n" + soak(),
    ]
    text = PAGE.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    PAGE.write_text(head + START + "\n" + "\n\n".join(sections) + "\n" + END + tail)
    print(f"wrote {PAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
