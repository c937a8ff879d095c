"""The OpenLineage Spark listener (``openlineage-spark``), configured from ``lineage:``.

The listener sees every Spark action of a session (each micro-batch's writes and MERGEs,
a replay, a restore, an analyst's SQL) and emits its run events itself; the project adds
only what it cannot know (``lakehouse.lineage.tracking``). Both sides meet in one run tree:
the session is the listener's *application run*, whose id the project chooses
(``overriddenApplicationRunId``) so that its own streaming-query runs can name that run
as their parent, and in one dataset graph: both name a Delta table ``(file, /abs/path)``
and a topic ``(kafka://host:port, topic)``.

Transports follow the config: JSON lines in ``<lineage dir>/spark.jsonl`` (the file
transport), HTTP to an OpenLineage server, or both (a composite transport that goes on
when one fails). ``LAKEHOUSE_LINEAGE_DISABLED=true`` leaves the listener out entirely.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lakehouse.config import Config

LISTENER = "io.openlineage.spark.agent.OpenLineageSparkListener"
PREFIX = "spark.openlineage."
APP_RUN_ID = PREFIX + "overriddenApplicationRunId"
APP_NAME = PREFIX + "appName"


@dataclass(frozen=True)
class RunRef:
    """A run as a parent facet names it."""

    namespace: str
    job: str
    run_id: str


@dataclass(frozen=True)
class ApplicationRun:
    """The listener's run of this Spark application, and the root of its run tree (the
    application itself, or the orchestrator's run given as ``parentRunId``)."""

    run: RunRef
    root: RunRef


def job_name(app_name: str) -> str:
    """The application's job name as the listener writes it (snake case, ``_`` for
    anything that is not a letter or digit)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", app_name)
    return re.sub(r"[^a-z0-9]+", "_", snake.lower()).strip("_") or "spark"


def session_conf(config: Config, app_run_id: str, streaming: bool = False) -> dict[str, str]:
    """The Spark conf that turns the listener on for a session (empty when lineage is
    off). ``app_run_id`` becomes the listener's application run id.

    In a ``streaming`` session the listener sees a micro-batch's MERGE reading an RDD it
    cannot name, and reports each target column as derived from itself; the project's
    column lineage (from the queries' definitions) stands instead, so the listener's is
    switched off there."""
    lc = config.lineage
    if not lc.enabled:
        return {}
    conf = {
        "spark.extraListeners": LISTENER,
        PREFIX + "namespace": config.lineage_namespace,
        APP_NAME: job_name(config.spark.app_name),
        APP_RUN_ID: app_run_id,
        PREFIX + "transport.type": "composite",
        PREFIX + "transport.continueOnFailure": "true",
    }
    if streaming:
        conf[PREFIX + "facets.columnLineage.disabled"] = "true"
    transports: dict[str, dict[str, str]] = {}
    if lc.file:
        transports["file"] = {"type": "file", "location": config.listener_file}
    if lc.http_url:
        http = {"type": "http", "url": lc.http_url, "endpoint": "/" + lc.http_endpoint.lstrip("/"),
                "timeoutInMillis": str(int(lc.http_timeout_seconds * 1000))}
        if lc.http_api_key:
            http |= {"auth.type": "api_key", "auth.apiKey": lc.http_api_key}
        transports["http"] = http
    if lc.console:
        transports["console"] = {"type": "console"}
    if not transports:
        return {}
    for name, settings in transports.items():
        for key, value in settings.items():
            conf[f"{PREFIX}transport.transports.{name}.{key}"] = value
    return conf


def application_run(conf: Mapping[str, str]) -> ApplicationRun | None:
    """The listener's application run of a session with this Spark conf (None when the
    session has no listener or no run id the project can know)."""
    if LISTENER not in conf.get("spark.extraListeners", "") or APP_RUN_ID not in conf:
        return None
    namespace = conf.get(PREFIX + "namespace", "default")
    app = RunRef(namespace, conf.get(APP_NAME) or job_name(conf.get("spark.app.name", "")),
                 conf[APP_RUN_ID])
    for prefix in ("rootParent", "parent"):
        run_id = conf.get(f"{PREFIX}{prefix}RunId")
        if run_id:
            root = RunRef(conf.get(f"{PREFIX}{prefix}JobNamespace", namespace),
                          conf.get(f"{PREFIX}{prefix}JobName", ""), run_id)
            return ApplicationRun(app, root)
    return ApplicationRun(app, app)
