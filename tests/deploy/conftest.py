"""The deploy files are part of the product: rendered, linted and validated offline."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ferry"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


def setting_variables() -> set[str]:
    """Every FERRY_* variable Ferry reads, from the settings model itself."""
    from pydantic import BaseModel  # noqa: PLC0415

    from service.config import Settings  # noqa: PLC0415

    names = set()
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= {f"FERRY_{name.upper()}__{sub.upper()}" for sub in annotation.model_fields}
        else:
            names.add(f"FERRY_{name.upper()}")
    return names


def load_yaml_documents(text: str) -> list[dict[str, object]]:
    return [document for document in yaml.safe_load_all(text) if document]
