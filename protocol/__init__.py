"""Wire protocol: message registry, codec, metainfo and piece math (no sockets, no state)."""
