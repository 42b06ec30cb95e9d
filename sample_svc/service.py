"""The sample service as a ``servicekit.server.Service``."""

from __future__ import annotations

import asyncio

import grpc
from labmesh.sample.v1 import sample_pb2_grpc

from sample_svc.api import SERVICE, SampleApi
from servicekit.config import Settings

SERVICE_NAME = SERVICE.full_name


class SampleService:
    """Runs :class:`~sample_svc.api.SampleApi` on a host. No background work or resources yet."""

    name = SERVICE_NAME

    def __init__(self, settings: Settings, draining: asyncio.Event) -> None:
        self.settings = settings
        self.draining = draining
        self.api = SampleApi()

    def register(self, server: grpc.aio.Server) -> None:
        sample_pb2_grpc.add_SampleServiceServicer_to_server(self.api, server)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
