"""Engine settings (`EngineSettings`, from `ALTLAS_*` variables) and the Prefect defaults we impose.

`apply_prefect_defaults()` runs before Prefect is imported anywhere in this project, so that a
machine without internet never tries to reach out (analytics, promotional content) and the
ephemeral server has enough time to start on a small machine. Each default yields to a value the
user set explicitly in the environment.
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pieces.settings import CommaList

PREFECT_DEFAULTS: dict[str, str] = {
    # Nothing may reach out to the internet at run time.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    # The ephemeral server's default 20 s start time-out is too short on a 2-core machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def apply_prefect_defaults() -> None:
    """Set our Prefect defaults in the environment unless the user set them already."""
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)


class EngineSettings(BaseSettings):
    """Settings of the interpreter itself. `docs/configuration.md` lists them all."""

    model_config = SettingsConfigDict(env_prefix="ALTLAS_", extra="ignore")

    template_max_output_chars: int = Field(
        default=1_000_000, gt=0, description="Largest string a template may render."
    )
    max_subworkflow_depth: int = Field(
        default=8, ge=1, le=100, description="How deeply `core.subworkflow` runs may nest."
    )
    workflow_dirs: CommaList = Field(
        default_factory=list,
        description="Folders where `core.subworkflow` finds `<workflow_id>.json` (ad-hoc runs).",
    )
    cancel_poll_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often a running flow checks whether it was cancelled from Prefect.",
    )
    summary_artifact: bool = Field(
        default=True, description="Write one summary table artifact per run to Prefect."
    )
    local_prefect_port: int = Field(
        default=4200,
        ge=1,
        le=65535,
        description="Port of the local Prefect server on 127.0.0.1: where `altlas-flows up` "
        "starts it, `down` stops it, and runs look for it when PREFECT_API_URL is unset.",
    )


@lru_cache(maxsize=1)
def get_engine_settings() -> EngineSettings:
    """The engine settings of this process, read once."""
    return EngineSettings()
