"""Fixed layout: region tiling, node sites, transmitter and user numbering.

Regions j = 0..J-1 (J = B*H*R) tile the plane row by row in a grid of ceil(sqrt(J)) columns, so
that neighbouring regions interfere when they reuse a subband. Region j belongs to HAP j // R and
beam j // (H*R). Transmitters are numbered TBS/UAV region by region (node m < T_n of a region is a
TBS, the rest are UAVs), then one HAP spot beam per region (HAP i serves its R regions by R spot
beams), then the satellite beams. Users are numbered region by region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .channel import satellite_elevation_deg, slant_range_m
from .config import EnvConfig

TX_TBS, TX_UAV, TX_HAP, TX_SAT = 0, 1, 2, 3


@dataclass
class Topology:
    num_regions: int
    num_terrestrial: int  # J * M
    num_tx: int  # J*M + J + B
    region_origin_xy: torch.Tensor  # [J, 2] lower-left corner
    region_centre_xy: torch.Tensor  # [J, 2]
    region_beam: torch.Tensor  # [J] long
    region_hap: torch.Tensor  # [J] long
    tbs_xy: torch.Tensor  # [J, T_n, 2]
    uav_start_xy: torch.Tensor  # [J, U, 2]
    hap_xy: torch.Tensor  # [I, 2] HAP above the centre of its regions
    tx_kind: torch.Tensor  # [X] long
    tx_region: torch.Tensor  # [X] long, -1 for satellite beams
    tx_prop_id: torch.Tensor  # [X] long: shadowing/LoS field id (one per physical platform)
    user_region: torch.Tensor  # [Utot] long
    sat_elevation_deg: torch.Tensor  # [J]
    sat_slant_range_m: torch.Tensor  # [J]
    area_size_xy: tuple  # (width_m, height_m)
    region_latlon_deg: torch.Tensor  # [J, 2] latitude, longitude of each region centre


def build_topology(cfg: EnvConfig, device: torch.device) -> Topology:
    net, ch = cfg.network, cfg.channel
    J, M, K, B = net.num_regions, net.nodes_per_region, net.users_per_region, net.num_beams
    size = net.region_size_m
    ncols = math.ceil(math.sqrt(J))
    nrows = math.ceil(J / ncols)
    j = torch.arange(J, device=device)
    origin = torch.stack([(j % ncols).float() * size, (j // ncols).float() * size], dim=1)
    centre = origin + size / 2.0
    region_hap = j // net.regions_per_hap
    region_beam = j // (net.haps_per_beam * net.regions_per_hap)

    def ring(count: int, radius: float, phase: float) -> torch.Tensor:
        if count == 0:
            return torch.zeros(0, 2, device=device)
        if count == 1 and radius > 0 and phase == 0.0:
            return torch.zeros(1, 2, device=device)
        ang = phase + 2.0 * math.pi * torch.arange(count, device=device).float() / count
        return radius * torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)

    # TBS sites on a ring of radius size/4 around the centre; UAVs start at the centre (several
    # UAVs on a ring of radius size/8).
    tbs = centre[:, None, :] + ring(net.tbs_per_region, size / 4.0, 0.0)[None]
    uav_off = (ring(net.uavs_per_region, size / 8.0, math.pi / 2) if net.uavs_per_region > 1
               else torch.zeros(net.uavs_per_region, 2, device=device))
    uav = centre[:, None, :] + uav_off[None]
    hap_xy = centre.view(net.num_haps, net.regions_per_hap, 2).mean(dim=1)

    kinds = [TX_TBS] * net.tbs_per_region + [TX_UAV] * net.uavs_per_region
    tx_kind = torch.tensor(kinds * J + [TX_HAP] * J + [TX_SAT] * B, device=device)
    tx_region = torch.cat([j.repeat_interleave(M), j, torch.full((B,), -1, device=device)])
    xt = J * M
    # One propagation field per physical platform: each terrestrial node, each HAP, one satellite.
    tx_prop = torch.cat([torch.arange(xt, device=device), xt + region_hap,
                         torch.full((B,), xt + net.num_haps, device=device)])

    # Satellite geometry per region: region offsets converted to latitude/longitude around the
    # area centre (small-area approximation), then spherical-Earth elevation and slant range.
    width, height = ncols * size, nrows * size
    els, ranges, latlon = [], [], []
    for c in centre.tolist():
        dlat = (c[1] - height / 2.0) / 111_320.0
        dlon = (c[0] - width / 2.0) / (111_320.0 * math.cos(math.radians(ch.area_latitude_deg)))
        el = satellite_elevation_deg(ch.area_latitude_deg + dlat, ch.area_longitude_deg + dlon,
                                     ch.subsatellite_latitude_deg, ch.subsatellite_longitude_deg,
                                     net.satellite_altitude_m)
        if el < 10.0:
            raise ValueError(
                f"satellite elevation {el:.1f} deg at region {len(els)} is below 10 deg (TR 38.811 "
                "validity); move subsatellite_latitude_deg/longitude_deg closer to the area")
        els.append(el)
        latlon.append((ch.area_latitude_deg + dlat, ch.area_longitude_deg + dlon))
        ranges.append(slant_range_m(el, net.satellite_altitude_m))
    return Topology(
        num_regions=J, num_terrestrial=xt, num_tx=xt + J + B,
        region_origin_xy=origin, region_centre_xy=centre, region_beam=region_beam,
        region_hap=region_hap, tbs_xy=tbs, uav_start_xy=uav, hap_xy=hap_xy,
        tx_kind=tx_kind, tx_region=tx_region, tx_prop_id=tx_prop,
        user_region=j.repeat_interleave(K),
        sat_elevation_deg=torch.tensor(els, device=device),
        sat_slant_range_m=torch.tensor(ranges, device=device),
        area_size_xy=(width, height),
        region_latlon_deg=torch.tensor(latlon, dtype=torch.float64),
    )
