"""The device service (instrument registry, heartbeats, reservations, device events).

First cut: the full ``labmesh.device.v1.DeviceService`` contract is served, and every RPC answers UNIMPLEMENTED
(reason ``NOT_IMPLEMENTED``) until its issue lands. ``service.DeviceService`` is what a ``ServiceHost`` runs.
"""
