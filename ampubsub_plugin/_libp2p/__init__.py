"""The rooms of the py-libp2p transport; :mod:`ampubsub_plugin.libp2p_transport`
is its face.

Private, and imported only when a :class:`Libp2pTransport` is asked for
(importing ``ampubsub_plugin`` pulls in neither trio nor py-libp2p). One job
per module, each opening with its rules and the py-libp2p behaviour it works
around:

- ``logs``: our logger, and keeping py-libp2p's logging off the
  application's root logger;
- ``pubsub``: the gossipsub router as we tune it, and the Pubsub subclass
  that reports peer join/leave and hands messages over directly;
- ``shedding``: per-connection budgets and fair queues before py-libp2p's
  signature checks; ``frames``: RPC frames read in chunks (both used by
  the Pubsub subclass's own read loop);
- ``inbox``: the queue between py-libp2p's hooks and the handler, one lane
  per author;
- ``stack``: the libp2p stack of one ``serve`` call, built, run and torn
  down;
- ``dial``: multiaddrs, and dialing peers in ``connect``;
- ``addresses``: listen addresses tried before py-libp2p binds them, and
  ``0.0.0.0`` / ``::`` announced as the host's interface addresses;
- ``errors``: py-libp2p's failures in our words (what failed, what to try);
- ``mdns``: announcing on the LAN and dialling the peers found there;
- ``transport``: :class:`Libp2pTransport`, the :class:`Transport` facade.

Names shared between these modules have no leading underscore; the package
itself is the private boundary.
"""
