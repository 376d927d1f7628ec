"""Where generation runs: the `[service]` table of the config file, `--cluster` and
`$WONDERZOOM_CLUSTER`.

Owns: `ServiceConfig` (frozen: `kind` "local" = a worker process on this machine, or "ray" =
a pool of warm workers on a Ray cluster; its `address`, `workers`, `num_gpus`, `num_cpus`,
`timeout_s`), checking the table (every mistake is one line naming the file and the key),
checking an address, and the precedence `--cluster` > `$WONDERZOOM_CLUSTER` > the file.

    [service]
    kind = "ray"
    address = "gpu-box:6379"      # HOST:PORT (GCS), ray://HOST:10001 (Ray Client) or "local"
    workers = 2                   # warm actors in the pool (one model set each)
    num_gpus = 1                  # per worker
    num_cpus = 4                  # per worker (also its torch / OpenCV threads)
    timeout_s = 600               # per request, from the moment a worker starts it

Does not own: reading the TOML file (`generation.model_config`), starting anything
(`generation.service`, `generation.cluster`) or the command line (`cli`).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from typing import Any, Mapping

from generation.config import ConfigError

ENV_VAR = "WONDERZOOM_CLUSTER"
KINDS = ("local", "ray")
KEYS = ("kind", "address", "workers", "num_gpus", "num_cpus", "timeout_s")
LOCAL_ADDRESS = "local"  # a private Ray instance started on this machine
CLIENT_SCHEME = "ray://"  # Ray Client: a machine outside the cluster
MAX_WORKERS = 256
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$")


@dataclass(frozen=True)
class ServiceConfig:
    kind: str = "local"
    address: str = ""  # kind "ray": HOST:PORT, ray://HOST:PORT or "local"
    workers: int = 1
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    timeout_s: float = 600.0

    @property
    def is_ray(self) -> bool:
        return self.kind == "ray"


def check_address(text: Any, what: str = "address") -> str:
    """`text` as a cluster address ("local", HOST:PORT or ray://HOST:PORT), else ConfigError."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{what}: expected HOST:PORT, ray://HOST:PORT or local")
    t = text.strip()
    if t == LOCAL_ADDRESS:
        return t
    rest = t[len(CLIENT_SCHEME):] if t.startswith(CLIENT_SCHEME) else t
    host, sep, port = rest.rpartition(":")
    if not sep or not _HOST.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what} {t!r}: expected HOST:PORT, ray://HOST:PORT or local "
                          "(e.g. 192.168.1.20:6379)")
    return t


def _number(value: Any, what: str, lo: float, hi: float, integer: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok and integer and isinstance(value, float) and not value.is_integer():
        ok = False
    if not ok or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{what} = {value!r}: must be {kind} in [{lo:g}, {hi:g}]")
    return int(value) if integer else float(value)


def parse_service_table(table: Any, where: str = "config") -> ServiceConfig:
    """The `[service]` table as a `ServiceConfig` (ConfigError: one line)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: [service] must be a table")
    for key in table:
        if key not in KEYS:
            raise ConfigError(f"{where}: service.{key}: unknown key (known: {', '.join(KEYS)})")
    kind = table.get("kind", "local")
    if kind not in KINDS:
        raise ConfigError(f"{where}: service.kind = {kind!r}: must be \"local\" or \"ray\"")
    address = ""
    if "address" in table:
        address = check_address(table["address"], f"{where}: service.address")
    if kind == "ray" and not address:
        raise ConfigError(f"{where}: service.address: required when kind = \"ray\" "
                          "(HOST:PORT, ray://HOST:PORT or local)")
    d = ServiceConfig()
    return ServiceConfig(
        kind=kind, address=address,
        workers=_number(table.get("workers", d.workers), f"{where}: service.workers", 1,
                        MAX_WORKERS, integer=True),
        num_gpus=_number(table.get("num_gpus", d.num_gpus), f"{where}: service.num_gpus", 0, 64),
        num_cpus=_number(table.get("num_cpus", d.num_cpus), f"{where}: service.num_cpus", 0.01,
                         1024),
        timeout_s=_number(table.get("timeout_s", d.timeout_s), f"{where}: service.timeout_s",
                          0.001, 7 * 24 * 3600.0))


def choose_service(file_config: ServiceConfig, cluster_arg: str | None,
                   environ: Mapping[str, str] | None = None) -> ServiceConfig:
    """`--cluster ADDRESS` if given, else `$WONDERZOOM_CLUSTER` if set, else the file's
    `[service]`; an address from the command line or the environment means kind "ray" with
    the file's other settings."""
    env = os.environ if environ is None else environ
    if cluster_arg is not None:
        return replace(file_config, kind="ray", address=check_address(cluster_arg, "--cluster"))
    text = env.get(ENV_VAR, "").strip()
    if text:
        return replace(file_config, kind="ray", address=check_address(text, f"${ENV_VAR}"))
    return file_config
