"""The embedded servers and the local cluster: ``broker``, ``registry``, ``storage``,
``marquez``, ``cluster``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse import graph
from lakehouse.cli.common import print_accounting, print_tables, say
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError

if TYPE_CHECKING:
    from lakehouse.servers.apicurio import EmbeddedRegistry
    from lakehouse.servers.broker import EmbeddedBroker
    from lakehouse.servers.seaweedfs import EmbeddedStore


def _embedded_broker(config: Config, port: int | None = None) -> EmbeddedBroker:
    """The warehouse's embedded broker, on ``port`` instead of the configured one if given."""
    from lakehouse.servers.broker import EmbeddedBroker
    bootstrap = config.kafka.bootstrap_servers
    if port is not None:
        bootstrap = f"{bootstrap.rpartition(':')[0]}:{port}"
    embedded = config.kafka.embedded
    return EmbeddedBroker(bootstrap, config.broker_data_dir, embedded.startup_timeout_seconds,
                          embedded.sasl_users, embedded.admin_user, embedded.topic_acls,
                          config.authority if embedded.tls else None)


def ensure_broker(config: Config) -> str:
    """Start the warehouse's broker if the config wants one, else check the cluster answers."""
    from lakehouse.io.kafka_admin import admin_client, list_topics
    if config.kafka.embedded.enabled:
        return _embedded_broker(config).up().describe()
    list_topics(admin_client(config.kafka.bootstrap_servers, config.kafka.client_properties),
                config.kafka.bootstrap_servers, config.kafka.client_properties)
    return f"using the Kafka cluster at {config.kafka.bootstrap_servers}"


def cmd_broker(config: Config, args: argparse.Namespace) -> int:
    if not config.kafka.embedded.enabled:
        raise _external(ErrorCode.BROKER_NOT_EMBEDDED, "the broker",
                        config.kafka.bootstrap_servers, args.action,
                        "unset LAKEHOUSE_KAFKA_BOOTSTRAP to use the embedded one")
    broker = _embedded_broker(config, args.port)
    reach = f"bootstrap servers: {broker.bootstrap} ({broker.protocol})"
    if config.kafka.embedded.tls:
        reach += f"\nclients trust {config.authority.ca_file}"
        if not config.kafka.embedded.sasl_users:
            reach += f"; each user's certificate: {config.authority.client_file('<user>')}"
    return _control(broker, args.action, "broker", reach)


def _external(code: ErrorCode, what: str, where: str, action: str, hint: str
              ) -> LakehouseError:
    """The error of ``<server> up|down|status`` when the config points at a server of its
    own: there is nothing here to control."""
    return LakehouseError(code, f"{what} is external ({where}); nothing to {action}", hint=hint)


def _control(server: EmbeddedBroker | EmbeddedRegistry | EmbeddedStore, action: str, name: str,
             reach: str) -> int:
    """``<name> up|down|status`` of a local server: ``reach`` says, after ``up``, how
    clients reach it; ``status`` exits 0 if it answers, 3 if not."""
    if action == "up":
        say(f"{name} {server.up().describe()}")
        say(reach)
    elif action == "down":
        say(f"{name} stopped" if server.down() else f"{name} was not running")
    else:
        status = server.status()
        say(f"{name} {status.describe()}")
        return 0 if status.answering else 3
    return 0


def _embedded_registry(config: Config) -> EmbeddedRegistry:
    """The warehouse's embedded schema registry, at the configured URL's host and port."""
    from urllib.parse import urlsplit

    from lakehouse.servers.apicurio import EmbeddedRegistry
    url = urlsplit(config.schema_registry.url)
    embedded = config.schema_registry.embedded
    return EmbeddedRegistry(url.hostname or "127.0.0.1",
                            url.port or (443 if config.registry_tls else 80),
                            config.registry_data_dir, embedded.startup_timeout_seconds,
                            config.authority if config.registry_tls else None,
                            embedded.users)


def ensure_registry(config: Config, sources: list[str]) -> str | None:
    """Start the warehouse's registry if an Avro source among ``sources`` needs it and the
    config wants one embedded; None when no source is Avro."""
    if not any(config.source(s).format == "avro" for s in sources):
        return None
    if config.schema_registry.embedded.enabled:
        return f"schema registry {_embedded_registry(config).up().describe()}"
    return f"using the schema registry at {config.schema_registry.url}"


def cmd_registry(config: Config, args: argparse.Namespace) -> int:
    if not config.schema_registry.embedded.enabled:
        raise _external(ErrorCode.REGISTRY_NOT_EMBEDDED, "the schema registry",
                        config.schema_registry.url, args.action,
                        "unset LAKEHOUSE_SCHEMA_REGISTRY_URL to use the embedded one")
    registry = _embedded_registry(config)
    return _control(registry, args.action, "schema registry",
                    f"Confluent-compatible API: {registry.url}")


def _embedded_store(config: Config) -> EmbeddedStore:
    """The warehouse's embedded object store, at the configured endpoint's host and port,
    with the configured key (``storage.credentials``)."""
    from urllib.parse import urlsplit

    from lakehouse.servers.seaweedfs import EmbeddedStore
    storage = config.storage
    access, secret = storage.credentials.get("access_key"), storage.credentials.get("secret_key")
    if not access or not secret:
        raise LakehouseError(
            ErrorCode.CONFIG_MISSING_KEY, "storage.credentials needs access_key and secret_key "
            "for the embedded store", hint="set them in the config, e.g. secret_key: "
            "${LAKEHOUSE_S3_SECRET_KEY} (conf/local.yaml has a local-only pair)")
    url = urlsplit(storage.endpoint)
    return EmbeddedStore(url.hostname or "127.0.0.1", url.port or 80, config.storage_data_dir,
                         config.storage_bucket, storage.region, access, secret,
                         storage.embedded.startup_timeout_seconds)


def ensure_store(config: Config, start: bool = False) -> str | None:
    """Check the object store of a warehouse on one (None for a warehouse on disk), before
    anything runs: it answers, the key is accepted, the bucket exists; ``start``: start the
    embedded one first if the config wants it."""
    from lakehouse.io.object_store import check_bucket
    if not config.store_buckets:
        return None
    said = f"object store at {config.storage.endpoint}"
    if start and config.storage.embedded.enabled:
        said = f"object store {_embedded_store(config).up().describe()}"
    for bucket in config.store_buckets:
        check_bucket(config.storage.store, bucket)
    return said


def cmd_storage(config: Config, args: argparse.Namespace) -> int:
    if not config.storage.embedded.enabled:
        raise _external(ErrorCode.STORAGE_NOT_EMBEDDED, "the object store",
                        config.storage.endpoint, args.action,
                        "set storage.embedded.enabled: true to use the embedded one")
    store = _embedded_store(config)
    return _control(store, args.action, "storage",
                    f"S3 endpoint: {store.endpoint}, bucket: {store.bucket}")


def cmd_marquez(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.io.storage import join
    from lakehouse.servers.marquez import Marquez
    server = Marquez(args.home, join(config.warehouse.root, "_marquez"), port=args.port,
                     admin_port=args.port + 1)
    if args.action == "up":
        say(f"marquez {server.up().describe()}")
        say(f"send the lineage there with `lineage: {{http_url: {server.url}}}` in the "
             f"config; browse {server.url}/api/v1/namespaces")
    elif args.action == "down":
        say("marquez stopped" if server.down() else "marquez was not running")
    else:
        status = server.status()
        say(f"marquez {status.describe()}")
        return 0 if status.healthy else 3
    return 0


def cmd_cluster(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.servers.cluster import (
        LAYERS,
        SHORT_JVM_OPTIONS,
        WORKER_CORES,
        WORKER_MEMORY,
        LocalCluster,
        cluster_data_dir,
        spark_home,
        submit,
    )
    data_dir = Path(cluster_data_dir(config))
    cluster = LocalCluster(data_dir, workers=args.workers)
    if args.action != "submit" and (args.layers or args.master):
        raise LakehouseError(ErrorCode.BAD_ARGUMENTS,
                             f"layers and --master go with `cluster submit`, not {args.action}")
    if args.action == "up":
        say(f"starting a Spark standalone cluster from {spark_home()}: a master and "
             f"{args.workers} workers ({WORKER_CORES} core, {WORKER_MEMORY} each) ...")
        status = cluster.up()
        say(f"cluster {status.describe()}")
        say(f"master URL: {status.master_url}")
        say(f"web UI: {status.web_ui}")
        say("submit the layer jobs with: lakehouse cluster submit bronze silver gold")
    elif args.action == "down":
        say("cluster stopped" if cluster.down() else "cluster was not running")
    elif args.action == "status":
        status = cluster.status()
        say(f"cluster {status.describe()}")
        for w in status.workers:
            say(f"  worker {w.id} {w.state} ({w.cores} cores, {w.memory_mb} MB)")
        return 0 if status.healthy else 3
    else:
        unknown = [layer for layer in args.layers if layer not in LAYERS]
        if unknown:
            raise LakehouseError(ErrorCode.BAD_ARGUMENTS,
                                 f"unknown layer {', '.join(unknown)}; the jobs are "
                                 f"{', '.join(LAYERS)}",
                                 hint="e.g. lakehouse cluster submit bronze silver gold")
        master = args.master or cluster.status().master_url
        if not master:
            raise LakehouseError(ErrorCode.CLUSTER_NOT_RUNNING,
                                 f"no cluster runs for {config.warehouse.root} (data in "
                                 f"{data_dir})",
                                 hint="start one with `lakehouse cluster up`, or name a "
                                      "running one with --master spark://HOST:PORT")
        # The local cluster's short jobs run their JVMs light (a real cluster's as it has them).
        options = "" if args.master else SHORT_JVM_OPTIONS
        for layer in args.layers or LAYERS:
            say(f"submitting pipelines/{layer}_job.py to {master} (until idle) ...")
            took = submit(layer, master, config, data_dir, java_options=options, printer=say)
            say(f"{layer} job finished in {took:.1f}s")
        print_tables(config)
        if "silver" in (args.layers or LAYERS):
            print_accounting(graph.build(config))
    return 0


def register_broker(sub: Any) -> None:
    """``lakehouse broker``."""
    p = sub.add_parser("broker", help="start, stop or inspect the warehouse's Kafka broker",
                       description="Control the warehouse's embedded broker: a single-node "
                                   "Apache Kafka (KRaft), data and log under "
                                   "<warehouse>/_broker. Not used when "
                                   "LAKEHOUSE_KAFKA_BOOTSTRAP is set.")
    p.add_argument("action", choices=["up", "down", "status"],
                   help="up: start and wait until it answers (refused if another process "
                        "holds the port); down: stop gracefully; status: exit 0 if it "
                        "answers, 3 if not")
    p.add_argument("--port", type=int,
                   help="listen on this port instead of the one in kafka.bootstrap_servers")
    p.set_defaults(func=cmd_broker)


def register_registry(sub: Any) -> None:
    """``lakehouse registry``."""
    p = sub.add_parser("registry", help="start, stop or inspect the warehouse's schema registry",
                       description="Control the warehouse's embedded schema registry: Apicurio "
                                   "Registry serving the Confluent-compatible API, schemas "
                                   "under <warehouse>/_registry. Not used when "
                                   "LAKEHOUSE_SCHEMA_REGISTRY_URL is set.")
    p.add_argument("action", choices=["up", "down", "status"],
                   help="up: start and wait until it answers; down: stop gracefully; "
                        "status: exit 0 if it answers, 3 if not")
    p.set_defaults(func=cmd_registry)


def register_storage(sub: Any) -> None:
    """``lakehouse storage``."""
    p = sub.add_parser("storage", help="start, stop or inspect the warehouse's S3 object store",
                       description="Control the embedded S3-compatible object store "
                                   "(SeaweedFS) at storage.endpoint, with the warehouse's "
                                   "bucket and storage.credentials' key; objects under "
                                   "<warehouse>/_storage (storage.embedded.data_dir). A real "
                                   "store needs only storage.endpoint and credentials.")
    p.add_argument("action", choices=["up", "down", "status"],
                   help="up: start, create the bucket and wait until it answers (refused if "
                        "another process holds the port); down: stop gracefully; status: "
                        "exit 0 if it answers, 3 if not")
    p.set_defaults(func=cmd_storage)


def register_marquez(sub: Any) -> None:
    """``lakehouse marquez``."""
    p = sub.add_parser("marquez", help="start, stop or inspect a local Marquez lineage server",
                       description="A local Marquez (the OpenLineage reference server) with "
                                   "its own PostgreSQL, data under <warehouse>/_marquez, to "
                                   "browse the lineage the pipelines send it. Marquez is not "
                                   "on Maven Central here: point --home or MARQUEZ_HOME at a "
                                   "Marquez API build (docs/lineage-facets.md).")
    p.add_argument("action", choices=["up", "down", "status"],
                   help="up: start and wait until healthy; down: stop Marquez and its "
                        "PostgreSQL; status: exit 0 if healthy, 3 if not")
    p.add_argument("--home", help="the Marquez API build (default $MARQUEZ_HOME)")
    p.add_argument("--port", type=int, default=5000,
                   help="API port (default 5000; the admin port is the next one)")
    p.set_defaults(func=cmd_marquez)


def register_cluster(sub: Any) -> None:
    """``lakehouse cluster``."""
    p = sub.add_parser("cluster", help="a local Spark standalone cluster; submit the jobs to it",
                       description="Control the warehouse's local Spark standalone cluster (a "
                                   "master and workers from the pyspark installation, state "
                                   "and logs under <warehouse>/_cluster), and run the "
                                   "pipelines/ layer jobs on it with spark-submit, one after "
                                   "another, each until idle.",
                       epilog="e.g. lakehouse cluster up && lakehouse cluster submit bronze "
                              "silver gold && lakehouse cluster down")
    p.add_argument("action", choices=["up", "down", "status", "submit"],
                   help="up: start and wait until every worker is ALIVE; down: stop the "
                        "workers and the master; status: exit 0 if every worker is ALIVE, 3 "
                        "if not; submit: spark-submit the layer jobs (--until-idle)")
    p.add_argument("layers", nargs="*", metavar="LAYER",
                   help="submit: bronze, silver and/or gold, in that order (default: all three)")
    p.add_argument("--workers", type=int, default=2, help="up: number of workers (default 2)")
    p.add_argument("--master", metavar="URL",
                   help="submit: to this master (e.g. spark://host:7077) instead of the "
                        "local cluster")
    p.set_defaults(func=cmd_cluster)
