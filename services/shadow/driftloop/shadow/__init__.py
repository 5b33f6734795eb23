"""The shadow service: mirrored traffic to shadow versions, and experiment statistics."""
