"""The device service as a ``servicekit.server.Service``."""

from __future__ import annotations

import asyncio

import grpc
from labmesh.device.v1 import device_pb2_grpc

from device_svc.api import SERVICE, DeviceApi
from servicekit.config import Settings

SERVICE_NAME = SERVICE.full_name


class DeviceService:
    """Runs :class:`~device_svc.api.DeviceApi` on a host. No background work or resources yet."""

    name = SERVICE_NAME

    def __init__(self, settings: Settings, draining: asyncio.Event) -> None:
        self.settings = settings
        self.draining = draining
        self.api = DeviceApi()

    def register(self, server: grpc.aio.Server) -> None:
        device_pb2_grpc.add_DeviceServiceServicer_to_server(self.api, server)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
