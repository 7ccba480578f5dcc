"""The ``voice-channel`` command line."""

from __future__ import annotations

import click

from voice_channel import __version__
from voice_channel.cli.demo import demo
from voice_channel.cli.doctor import doctor
from voice_channel.cli.engine import engine
from voice_channel.cli.plugins import plugins
from voice_channel.cli.serve import serve
from voice_channel.cli.talk import talk

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="voice-channel")
def cli() -> None:
    """Real-time voice for agent runtimes through ElevenLabs Speech Engine."""


cli.add_command(serve)
cli.add_command(talk)
cli.add_command(demo)
cli.add_command(plugins)
cli.add_command(engine)
cli.add_command(doctor)


def main() -> None:
    cli(prog_name="voice-channel")
