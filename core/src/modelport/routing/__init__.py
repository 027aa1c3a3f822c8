"""Config files (LiteLLM-proxy format) and the router they describe."""

from ._config import Config, Deployment, EnvRef, declared_providers, load_config
from ._router import InMemoryRouterState, Router, RouterState, fails_over

__all__ = [
    "Config",
    "Deployment",
    "EnvRef",
    "load_config",
    "declared_providers",
    "Router",
    "RouterState",
    "InMemoryRouterState",
    "fails_over",
]
