"""The scheduler as a `servicekit.server.Service`: builds the store, engine, fire hub and mailer on one database
and wires their wake-ups (in-process calls, plus PostgreSQL LISTEN/NOTIFY between replicas)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from labmesh.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

from scheduler_svc.alarms import AlarmService
from scheduler_svc.api import SchedulerApi
from scheduler_svc.delivery import FireHub
from scheduler_svc.engine import Engine, EngineConfig
from scheduler_svc.store import DeliveryStore, SchedulerStore
from servicekit.config import Settings
from servicekit.db import Database

log = logging.getLogger(__name__)

SERVICE_NAME = scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name


class SchedulerService:
    name = SERVICE_NAME

    def __init__(self, settings: Settings, draining: asyncio.Event, *, database: Database | None = None) -> None:
        self.settings = settings
        self.db = database or Database.from_settings(settings)
        self._owns_db = database is None
        self.store = SchedulerStore(self.db)
        self.deliveries = DeliveryStore(self.db)
        self.hub = FireHub(self.deliveries, buffer_size=settings.fire_stream_buffer)
        self.engine = Engine(self.store, EngineConfig.from_settings(settings),
                             on_fires_committed=self.hub.fires_committed)
        self.alarms = AlarmService(self.store, self.engine, settings)
        self.api = SchedulerApi(self.alarms, self.hub, self.engine, self.deliveries, settings, draining)
        self.mailer: Any = None
        self._listener: Any = None

    def register(self, server: grpc.aio.Server) -> None:
        scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(self.api, server)

    async def start(self) -> None:
        await self.hub.start()
        await self.engine.start()
        await self._listen()
        if self.settings.mail_enabled:
            from scheduler_svc.mailer import Mailer

            self.mailer = Mailer(self.hub, self.settings, ack_deadline_s=self.settings.smtp_retry_interval,
                                 max_attempts=self.settings.smtp_max_attempts)
            await self.mailer.start()

    async def stop(self) -> None:
        if self.mailer is not None:
            await self.mailer.stop()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
        await self.engine.stop()
        await self.hub.stop()
        if self._owns_db:
            await self.db.dispose()

    async def _listen(self) -> None:
        """Between replicas: NOTIFY carries alarm changes (to the shard owner) and new fires (to every hub)."""
        if self.db.dialect != "postgresql":
            return
        import asyncpg

        url = self.db.url.set(drivername="postgresql")
        self._listener = await asyncpg.connect(url.render_as_string(hide_password=False))

        def on_alarms(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            origin, _, ids = payload.partition(":")
            if origin == self.engine.owner:
                return
            if ids == "*":
                self.engine.bulk_loaded()
                return
            for pk in ids.split(","):
                if pk.isdigit():
                    self.engine.alarm_changed_elsewhere(int(pk))

        def on_fires(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            if payload.isdigit():
                self.hub.fires_committed(int(payload))

        await self._listener.add_listener("labmesh_alarms", on_alarms)
        await self._listener.add_listener("labmesh_fires", on_fires)
