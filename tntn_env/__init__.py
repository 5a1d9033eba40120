"""tntn: hierarchical DRL over integrated terrestrial / non-terrestrial networks."""

from .config import (
    ChannelConfig,
    DemandConfig,
    EnvConfig,
    NetworkConfig,
    RewardConfig,
    TimingConfig,
    make_config,
)
from .core import TNTNCore

__all__ = ["ChannelConfig", "DemandConfig", "EnvConfig", "NetworkConfig", "RewardConfig",
           "TimingConfig", "TNTNCore", "make_config"]
__version__ = "0.1.0"
