"""labmesh's shared runtime: every service (scheduler, device, sample, gateway) is built on these modules.

Read them in this order:

* :mod:`servicekit.config` — ``Settings.from_env()``: every environment variable, validated at start;
* :mod:`servicekit.errors` — domain exceptions and the one interceptor mapping them to rich gRPC statuses;
* :mod:`servicekit.tenancy` — the caller's lab, from ``labmesh-lab`` metadata;
* :mod:`servicekit.telemetry` — OpenTelemetry from the standard ``OTEL_*`` variables;
* :mod:`servicekit.channels` — client channels (tracing, keepalive, round_robin, default deadline);
* :mod:`servicekit.server` — ``ServiceHost``: the one server bootstrap (health, reflection, graceful shutdown);
* :mod:`servicekit.metrics` — the Prometheus endpoint and shared gauges;
* :mod:`servicekit.db` and ``servicekit/migrations`` — the database engine and its schema.

The package imports nothing itself, so ``import servicekit.errors`` stays cheap (no database driver loads).
"""
