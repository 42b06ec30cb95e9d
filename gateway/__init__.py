"""The gateway: one gRPC endpoint proxying every RPC of the scheduler, device and sample services to their backends.

* :mod:`gateway.proxy` — the raw-bytes generic handler (all four cardinalities, metadata, deadlines, cancellation,
  statuses with their details);
* :mod:`gateway.health` — each backend service's health, mirrored from the backend;
* :mod:`gateway.service` — ``GatewayService`` (a ``servicekit`` Service) and ``build_gateway_host(settings)``.

Authentication, lab isolation and rate limits come later, at ``Proxy.outgoing_metadata``.
"""
