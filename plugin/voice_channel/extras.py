"""How a missing optional extra is named in an error: one wording for every extra.

voice-channel is installed from a checkout or from a wheel built from one (README: Install), not from
PyPI, so ``pip install 'voice-channel[extra]'`` would find nothing: the hint says what works.
"""

from __future__ import annotations

__all__ = ["install_hint"]


def install_hint(extra: str) -> str:
    """What to run to get the optional dependencies of ``extra`` (``scale``, ``hermes``, ``openclaw``, ``local``)."""
    return (
        f"install the {extra!r} extra: pip install '.[{extra}]' in a voice-channel checkout, "
        f"or the built wheel with [{extra}] (README: Install)"
    )
