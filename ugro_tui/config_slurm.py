"""The `[slurm]` table of cluster.toml: how the Slurm backend reaches the cluster and what every job asks of it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ugro_tui.config_check import Checker, choice, show, string
from ugro_tui.errors import ConfigError

SLURM_KEYS = ("login", "partition", "account", "qos", "time", "extra", "follow", "conf")
WORD_RE = re.compile(r"^[A-Za-z0-9_.,:+-]+$")  # partition, account and QOS names (never shell characters)
TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$|^(UNLIMITED|INFINITE)$")
OPTION_RE = re.compile(r"^--[a-z][a-z0-9-]*(=.*)?$")


@dataclass(frozen=True)
class SlurmConfig:
    login: str                        # the [[nodes]] entry used as the login node
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None           # the default time limit, in Slurm's words: 30, 2:00:00, 1-12
    extra: tuple[str, ...] = ()       # more sbatch options, as given: ["--constraint=a100"]
    follow: str = "login"             # read the rank logs through the login node, or on the compute node
    conf: str | None = None           # SLURM_CONF for the commands on the login node, when not the default


def _options(c: Checker, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and OPTION_RE.match(v) for v in value):
        c.fail(key, f'expected an array of sbatch options such as "--constraint=a100", got {show(value)}')
    banned = [v for v in value if v.split("=", 1)[0] in ("--wrap", "--array", "--dependency", "--job-name")]
    if banned:
        c.fail(key, f"{banned[0].split('=', 1)[0]} is set by ugro per job")
    return tuple(value)


def parse_slurm(source: str, value: Any, node_names: set[str]) -> SlurmConfig:
    c = Checker(source, "slurm", value)
    c.only(SLURM_KEYS)
    login = c.get("login", string(what="the name of the [[nodes]] entry that is the login node"), required=True)
    if login not in node_names:
        raise ConfigError(source, "slurm.login", f'no [[nodes]] entry is named "{login}"; known: '
                          f"{', '.join(sorted(node_names))}")
    word = string(WORD_RE, "a Slurm name (letters, digits, . _ , : + -)")
    return SlurmConfig(
        login=login,
        partition=c.get("partition", word), account=c.get("account", word), qos=c.get("qos", word),
        time=c.get("time", string(TIME_RE, "a Slurm time limit such as 30, 2:00:00 or 1-12")),
        extra=c.get("extra", _options, default=()),
        follow=c.get("follow", choice(("login", "node")), default="login"),
        conf=c.get("conf", string(what="a path")),
    )
