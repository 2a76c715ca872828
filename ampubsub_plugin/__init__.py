"""ampubsub_plugin: share asyncmachine machines over a libp2p gossipsub topic."""
