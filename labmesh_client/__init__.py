"""labmesh_client: a small Python client for labmesh.

::

    import asyncio
    import labmesh_client
    from labmesh.scheduler.v1 import scheduler_pb2 as pb

    async def main():
        async with labmesh_client.connect("127.0.0.1:50051", lab="default") as client:
            alarm = await client.scheduler.CreateAlarm(pb.CreateAlarmRequest(
                alarm_id="feed-7",
                alarm=pb.Alarm(display_name="Feed incubator 7", target="devices/incubator-7",
                               schedule=pb.Schedule(cron=pb.CronSchedule(expression="0 7 * * MON-FRI",
                                                                         time_zone="Europe/Berlin"))),
            ))
            print(alarm.name, alarm.next_fire_time.ToJsonString())
            async for fire in client.fires({"targets": ["devices/incubator-7"]}):
                print(fire.fire_id, fire.alarm.display_name)   # resumes by cursor across server restarts

    asyncio.run(main())

:func:`connect` opens a :class:`Client` (plaintext, or TLS with ``tls=True``; ``api_key`` becomes
``authorization: Bearer <key>``; ``lab`` the ``labmesh-lab`` metadata). ``client.scheduler`` is the generated
``SchedulerServiceStub``; :meth:`Client.fires` is a :class:`FireStream`; :meth:`Client.acknowledge` acknowledges
consumer-group deliveries.
"""

from labmesh_client.client import CHANNEL_OPTIONS, DEFAULT_ADDRESS, Client, connect
from labmesh_client.fires import RETRYABLE_CODES, FireStream

__all__ = ["CHANNEL_OPTIONS", "DEFAULT_ADDRESS", "RETRYABLE_CODES", "Client", "FireStream", "connect"]
