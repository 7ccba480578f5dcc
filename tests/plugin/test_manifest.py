"""The plugin manifest and the README's settings table are generated from the code and kept in sync."""

from __future__ import annotations

from pathlib import Path

import yaml

from voice_channel import __version__
from voice_channel.manifest import config_schema, derived_files, settings_model

ROOT = Path(__file__).resolve().parents[2]


def test_generated_files_are_up_to_date():
    stale = [str(p) for p, wanted in derived_files(ROOT).items() if p.read_text(encoding="utf-8") != wanted]
    assert stale == [], f"run `make manifests`: stale {stale}"


def test_manifest_identity_and_schema():
    manifest = yaml.safe_load((ROOT / "openclaw.plugin.yaml").read_text())
    assert manifest["id"] == "elevenlabs-voice"
    assert manifest["version"] == __version__
    assert manifest["name"] and manifest["description"]
    schema = manifest["configSchema"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema == config_schema(settings_model())


def test_every_setting_is_in_the_schema_and_documented():
    manifest = yaml.safe_load((ROOT / "openclaw.plugin.yaml").read_text())
    readme = (ROOT / "README.md").read_text()

    def leaves(model, prefix=""):
        for name, field in model.model_fields.items():
            sub = field.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                yield from leaves(sub, f"{prefix}{name}.")
            else:
                assert field.description, f"setting {prefix}{name} has no description"
                yield f"{prefix}{name}"

    for key in leaves(settings_model()):
        node = manifest["configSchema"]
        for part in key.split("."):
            node = node["properties"][part]
        assert f"| `{key}` |" in readme
    hints = manifest["uiHints"]
    assert hints["elevenlabs.api_key"]["sensitive"] is True
    assert hints["auth.header_secret"]["sensitive"] is True


def test_schema_uses_standard_keywords_only():
    allowed = {
        "type",
        "properties",
        "additionalProperties",
        "default",
        "description",
        "enum",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "items",
        "const",
        "required",
    }

    def walk(node):
        if isinstance(node, dict):
            props = node.get("properties", {})
            assert set(node) - {"properties"} <= allowed, set(node) - allowed
            for child in props.values():
                walk(child)

    walk(config_schema(settings_model()))
