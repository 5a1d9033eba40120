"""tntn: hierarchical DRL over integrated terrestrial / non-terrestrial networks."""

from .config import (
    ChannelConfig,
    DemandConfig,
    EnvConfig,
    NetworkConfig,
    RewardConfig,
    TimingConfig,
    make_config,
    parse_overrides,
)
from .core import TNTNCore
from .pettingzoo_env import TNTNParallelEnv, parallel_env

__all__ = ["ChannelConfig", "DemandConfig", "EnvConfig", "NetworkConfig", "RewardConfig",
           "TimingConfig", "TNTNCore", "TNTNParallelEnv", "make_config", "parallel_env",
           "parse_overrides"]
__version__ = "0.1.0"
