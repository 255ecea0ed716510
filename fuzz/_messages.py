"""Seeds shared by the message harnesses: a target's own frames first, then one frame of every
other schema (a consumer may be sent any of them on its topic)."""

from __future__ import annotations

from fuzz.seeds import messages

__all__ = ["seeds_for"]


def seeds_for(*names: str) -> list[bytes]:
    """Frames of ``names``, then the first frame of each other schema."""
    all_frames = messages()
    own = [f for name in names for f in all_frames[name]]
    return own + [frames[0] for name, frames in all_frames.items() if name not in names]
