"""``voice-channel plugins``: what is installed."""

from __future__ import annotations

import json

import click

from voice_channel.cli.common import plugin_manager
from voice_channel.plugins import PluginHooks


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List plugins, the runtimes they register, and their hooks."""
    hooks = PluginHooks(plugin_manager())
    runtimes = hooks.runtimes()
    sections = hooks.settings_sections()
    described = hooks.describe()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "plugins": described,
                    "runtimes": {
                        name: {"plugin": e.plugin, "description": e.description} for name, e in sorted(runtimes.items())
                    },
                    "settings_sections": sorted(sections),
                },
                indent=2,
            )
        )
        return
    click.echo("Runtimes:")
    for name, entry in sorted(runtimes.items()):
        click.echo(f"  {name:<10} {entry.description}  [{entry.plugin}]")
    click.echo("Plugins:")
    for plugin in described:
        origin = "built-in" if plugin["builtin"] else plugin["distribution"] or "registered"
        if plugin.get("error"):
            click.echo(f"  {plugin['name']:<10} FAILED TO LOAD: {plugin['error']}")
            continue
        click.echo(f"  {plugin['name']:<10} ({origin})")
        for hook in plugin["hooks"]:
            click.echo(f"      {hook}")
    if sections:
        click.echo("Settings sections added by plugins: " + ", ".join(sorted(sections)))
