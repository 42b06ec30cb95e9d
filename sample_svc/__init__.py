"""The sample service (samples, their locations, workflows and tasks).

First cut: the full ``labmesh.sample.v1.SampleService`` contract is served, and every RPC answers UNIMPLEMENTED
(reason ``NOT_IMPLEMENTED``) until its issue lands. ``service.SampleService`` is what a ``ServiceHost`` runs.
"""
