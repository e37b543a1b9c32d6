"""The replica's name (`PERCEPTION_LLM_REPLICA`), a part of `Settings` kept in its own module.

Several replicas behind a load balancer (deploy/) write to one set of logs, one metrics system
and one capture database: each names itself in all three, so a call, a log line or a scrape can
be traced to the process that served it (issue 26).
"""

from __future__ import annotations

import os
import re
import socket

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

REPLICA_NAME = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9._:@-]")


class ReplicaSettings(BaseSettings):
    replica: str | None = Field(
        None,
        description=(
            "This process's name in logs, metrics (`perception_llm_replica_info`) and captured "
            "calls, so replicas behind a load balancer can be told apart (default "
            "`hostname:port`)."
        ),
    )

    @field_validator("replica")
    @classmethod
    def _replica_is_a_name(cls, value: str | None) -> str | None:
        # Written into every log line and a metric label: a name, not free text.
        if value is not None and not REPLICA_NAME.fullmatch(value):
            raise ValueError("must be 1-128 letters, digits or ._:@- (e.g. a pod name)")
        return value

    def replica_name(self, port: int) -> str:
        """This replica's name: the setting, else `hostname:port` (`hostname:pidN` on a port
        the system picks, unknown until it is bound). `serve` hands it to the app through the
        environment, where it must pass the setting's own check: odd characters in a host name
        become `-`."""
        if self.replica:
            return self.replica
        host = NOT_IN_A_NAME.sub("-", socket.gethostname())[:100] or "host"
        return f"{host}:{port or f'pid{os.getpid()}'}"
