"""The Kubernetes API emulator the kube-xdp tests run against.

PyPI's kmock (0.8) ``KubernetesEmulator`` keeps objects in memory and
serves them over HTTP: list, watch (every existing object first, as
ADDED), create, patch (a dict merge; ``null`` removes a key), delete with
finalizers and ``deletionTimestamp``, the ``/status`` subresource as a
patch of the object. This wrapper adds only what it lacks for kube-rs's
watcher, and says so:

- ``metadata.resourceVersion``: kmock sets none, and kube-runtime's
  watcher refuses watch events without one (it re-lists forever). Every
  create and patch here stamps the next number of one global counter;
  a list answers with the counter as its resourceVersion.
- ``metadata.uid`` and ``creationTimestamp`` on create, as the API server
  sets them.
- the resources the tests use are declared (services, nodes, both kinds
  of events), so that listing an empty one answers an empty list, not 404.
- a watch that loses nothing: kmock's ``_serve_watch`` copies the existing
  objects under its lock, sends them, and only then starts reading the
  resource's event bus, so a create or patch made while the copy is sent
  is never delivered (and, watches never timing out, no re-list repairs
  it: a Node POSTed while kube-rs's watcher (re)connects stays unseen).
  Here the bus position is marked inside the lock, before the copy: the
  copy, then every event since the mark.

It does not emulate: resourceVersion preconditions (a stale one is not
refused with 409), field or label selectors, watch bookmarks and
timeouts, strategic-merge patches (kube-xdp sends JSON merge patches),
admission, defaulting (nodePorts are written by the test).

Usage: python3 emulator.py PORTFILE [PORT [HOST]] — listens on
HOST:PORT (127.0.0.1 and a free port by default), writes the port to
PORTFILE, serves until killed.
"""

import asyncio
import datetime
import sys
import uuid

import kmock
from kmock._internal import enums


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator with resource versions (see the module's doc)."""

    def _next_rv(self) -> str:
        self.__dict__['rv'] = self.__dict__.get('rv', 0) + 1
        return str(self.__dict__['rv'])

    async def _handle(self, request):
        data = request.data
        if request.resource is not None and isinstance(data, dict):
            if request.action == enums.action.CREATE:
                meta = data.setdefault('metadata', {})
                meta.setdefault('uid', str(uuid.uuid4()))
                now = datetime.datetime.now(tz=datetime.UTC).replace(microsecond=0)
                meta.setdefault('creationTimestamp', now.isoformat().replace('+00:00', 'Z'))
                meta['resourceVersion'] = self._next_rv()
            elif request.action == enums.action.UPDATE and request.name is not None:
                data.setdefault('metadata', {})['resourceVersion'] = self._next_rv()
        return await super()._handle(request)

    async def _serve_watch(self, request):
        # kmock 0.8's, with the bus marked under the lock before the copy
        # (see the module's doc); its private helpers by their mangled
        # names.
        yield b''
        resource = request.resource
        assert resource is not None
        bus = self._buses[resource]
        async with self._lock:
            mark = await bus.mark()
            objs = self._KubernetesEmulator__get_objs(request, strict=False)
            events = [{'type': 'ADDED', 'object': obj.raw} for obj in objs if not obj.deleted]
        try:
            for event in events:
                yield event
            async for event in bus.stream(since=mark):
                meta = event.get('object', {}).get('metadata', {})
                if self._KubernetesEmulator__check(
                    request, resource, meta.get('namespace'), meta.get('name'), strict=False
                ):
                    yield event
        finally:
            await bus.unmark(mark)

    async def _serve_list(self, request):
        listed = await super()._serve_list(request)
        listed['metadata']['resourceVersion'] = str(self.__dict__.get('rv', 0))
        return listed


async def main(port_file: str, port: int, host: str) -> None:
    emulator = Emulator()
    for resource in ('v1/services', 'v1/nodes', 'v1/events', 'events.k8s.io/v1/events'):
        emulator.resources[resource] = {}
    async with emulator, kmock.Server(emulator, host=host, port=port or None) as server:
        with open(port_file + '.tmp', 'w') as f:
            f.write(str(server.port))
        import os
        os.replace(port_file + '.tmp', port_file)
        await asyncio.Event().wait()


if __name__ == '__main__':
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    host = sys.argv[3] if len(sys.argv) > 3 else '127.0.0.1'
    asyncio.run(main(sys.argv[1], port, host))
