"""For spawned services and notebook servers: cached, revocation-aware token checks."""

from .auth import CachedHubAuth, CachedHubOAuth, CachedTokenChecks
from .authenticated import CachedHubAuthenticated
from .checker import AnswerCache

__all__ = [
    "AnswerCache",
    "CachedHubAuth",
    "CachedHubAuthenticated",
    "CachedHubOAuth",
    "CachedTokenChecks",
]
