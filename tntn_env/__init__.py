"""tntn: hierarchical DRL over integrated terrestrial / non-terrestrial networks."""

from .config import (
    TINY_OVERRIDES,
    ChannelConfig,
    DemandConfig,
    EnvConfig,
    NetworkConfig,
    RewardConfig,
    TimingConfig,
    format_overrides,
    make_config,
    parse_overrides,
)
from .core import SYSTEM_METRICS, TNTNCore
from .pettingzoo_env import TNTNParallelEnv, parallel_env

METRICS = SYSTEM_METRICS  # the system metrics of a step, in order (tntn_env.core.SYSTEM_METRICS)

__all__ = ["ChannelConfig", "DemandConfig", "EnvConfig", "METRICS", "NetworkConfig",
           "RewardConfig", "SYSTEM_METRICS", "TINY_OVERRIDES", "TimingConfig", "TNTNCore",
           "TNTNParallelEnv", "format_overrides", "make_config", "parallel_env",
           "parse_overrides"]
__version__ = "0.1.0"
