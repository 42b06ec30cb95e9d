"""Mail an alarm's owner when it fires (alarms with notify_owner).

The mailer is a consumer-group member like any other subscriber, so it inherits the same guarantee: a fire is
acknowledged only after the SMTP server accepted the message; while the server is down nothing is acknowledged, the
fires are redelivered after the ack deadline (attempt + 1), and after max_attempts they are dead-lettered and stay
visible in ListFires. The group is internal (its own lab name) and reads the fires of every lab.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from google.protobuf import json_format

from scheduler_svc.delivery import FireFilter, FireHub, FireItem

log = logging.getLogger(__name__)

MAILER_LAB = "labmesh-system"
MAILER_GROUP = "mailer"


def compose(item: FireItem, sender: str) -> EmailMessage:
    event = item.event
    alarm = event.alarm
    message = EmailMessage()
    message["From"] = sender
    message["To"] = alarm.owner_email
    title = alarm.display_name or alarm.name
    message["Subject"] = f"[labmesh] {title} fired"
    message["Message-ID"] = f"<{event.fire_id.replace('/', '.')}@labmesh>"  # the same fire keeps its id on retry
    payload = json.dumps(json_format.MessageToDict(alarm.payload), indent=2) if alarm.payload.fields else "{}"
    message.set_content(
        f"{title} fired.\n\n"
        f"alarm:    {alarm.name}\n"
        f"target:   {alarm.target}\n"
        f"nominal:  {event.nominal_time.ToJsonString()}\n"
        f"fired at: {event.fire_time.ToJsonString()}\n"
        f"fire id:  {event.fire_id}\n\n"
        f"payload:\n{payload}\n"
    )
    return message


class Mailer:
    def __init__(self, hub: FireHub, settings: Any, *, ack_deadline_s: float = 30.0, max_attempts: int = 10) -> None:
        self.hub = hub
        self.settings = settings
        self.ack_deadline_us = int(ack_deadline_s * 1e6)
        self.max_attempts = max_attempts
        self.sent = 0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mailer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        dispatcher = await self.hub.join_group(
            MAILER_LAB, MAILER_GROUP, FireFilter(notify_only=True), ack_deadline_us=self.ack_deadline_us,
            max_attempts=self.max_attempts, all_labs=True,
        )
        member, inbox = dispatcher.add_member(capacity=100)
        try:
            while True:
                await inbox.wait()
                for item, attempt in inbox.take(100):
                    await self._deliver(item, attempt)
        finally:
            await dispatcher.remove_member(member)

    async def _deliver(self, item: FireItem, attempt: int) -> None:
        s = self.settings
        try:
            await aiosmtplib.send(
                compose(item, s.smtp_from), hostname=s.smtp_host, port=s.smtp_port, username=s.smtp_username,
                password=s.smtp_password, start_tls=s.smtp_starttls, timeout=10,
            )
        except (aiosmtplib.SMTPException, OSError) as err:
            # Not acknowledged: redelivered after the ack deadline with attempt + 1, dead-lettered at the limit.
            self.failures += 1
            log.warning("mailing %s (attempt %d) failed: %s", item.event.fire_id, attempt, err)
            return
        self.sent += 1
        await self.hub.store.acknowledge_seqs(MAILER_LAB, MAILER_GROUP, [item.seq])
