"""The rooms of the wire codec; :mod:`ampubsub_plugin.protocol` is its face.

Private: import the codec's names from ``ampubsub_plugin.protocol``, which
re-exports them. One job per module, in the order a payload meets them:

- ``errors``: :class:`ProtocolError`, its stable reasons, how culprits are
  named in a message;
- ``messages``: the message types, the protocol's limits, ``time_sum`` and
  ``schema_hash``;
- ``reader``: ``decode`` and the validators of untrusted input;
- ``writer``: ``encode``, Go's layout.

No I/O and no event loop anywhere here. Names shared between these modules
have no leading underscore; the package itself is the private boundary.
"""
