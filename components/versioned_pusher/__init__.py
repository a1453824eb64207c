"""A Pusher that publishes each blessed model as an atomically appearing version."""

from components.versioned_pusher.component import VersionedPusher

__all__ = ["VersionedPusher"]
