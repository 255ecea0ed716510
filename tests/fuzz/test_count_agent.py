"""Partial counts that decode never crash the count agent's windows.

Found by feeding a counts partition (:class:`streams.shard.ShardCounter`) frames mutated from
real ones: minutes that are no minutes, or packet rows and address pairs that name different
(minute, value)s, decoded and then raised ``IndexError`` / ``ValueError`` in
``streams/windows.py`` (the count agent catches only darkscope errors).
:func:`schemas.partials.decode_frame` now rejects them as ``UndecodableMessage``, so they are
dead-lettered instead.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from core.errors import DarkscopeError, UndecodableMessage
from fuzz.seeds import messages
from schemas.codec import Codec
from schemas.names import PARTIAL_COUNTS
from schemas.partials import Partial, PartialFrame, decode_frame, encode_frame
from streams.shard import ShardCounter

CODEC = Codec()
COLUMNS = ("minute", "value_idx", "packets", "pair_minute", "pair_value_idx", "pair_addr")


def _frames() -> list[PartialFrame]:
    return [decode_frame(CODEC, f) for f in messages()[PARTIAL_COUNTS]]


def _mutated(frame: PartialFrame, rng: np.random.Generator, pick: random.Random) -> PartialFrame:
    """The frame with one column of each kind garbled, or its minutes shifted on one side."""
    parts = []
    for p in frame.partials:
        cols = {name: getattr(p, name).copy() for name in COLUMNS}
        name = pick.choice(COLUMNS)
        if pick.random() < 0.5 and len(cols[name]):
            raw = rng.integers(0, 256, cols[name].nbytes, dtype=np.uint8).tobytes()
            cols[name] = np.frombuffer(raw, dtype=cols[name].dtype).copy()
            if name.endswith("value_idx"):
                cols[name] %= max(len(p.values), 1)
        else:
            side = pick.choice(("minute", "pair_minute"))
            cols[side] = cols[side] + 60 * rng.integers(-90, 90, len(cols[side]))
        parts.append(Partial(p.kind, p.values, **cols))
    watermark = pick.choice([frame.watermark, frame.watermark + int(rng.integers(0, 10**13)), -1, -2])
    return PartialFrame(
        tuple(parts), pick.randrange(4), watermark, frame.source_offset, frame.shard, frame.shards
    )


def test_mutated_partials_that_decode_are_counted_without_crashing_the_windows() -> None:
    frames = [f for f in _frames() if f.partials]
    rng, pick = np.random.default_rng(5), random.Random(5)
    rejected = counted = 0
    for trial in range(300):
        counter = ShardCounter(trial % 2, 4, 3600, 60)
        for offset in range(10):
            data = encode_frame(CODEC, _mutated(pick.choice(frames), rng, pick))
            try:
                frame = decode_frame(CODEC, data)
            except DarkscopeError:
                rejected += 1
                continue
            counter.count(frame._replace(source_offset=offset), offset)
            counter.tick()
            counted += 1
    assert rejected and counted  # both kinds of frame were tried


def test_partials_whose_pairs_name_other_minutes_than_their_rows_are_undecodable() -> None:
    frame = next(f for f in _frames() if f.partials)
    p = frame.partials[0]
    shifted = Partial(
        p.kind, p.values, p.minute, p.value_idx, p.packets, p.pair_minute + 60, p.pair_value_idx, p.pair_addr
    )
    data = encode_frame(CODEC, frame._replace(partials=(shifted, *frame.partials[1:])))
    with pytest.raises(UndecodableMessage, match="name different minutes or values"):
        decode_frame(CODEC, data)


@pytest.mark.parametrize("minute", [-60, 1_648_771_230, 2**40])
def test_partials_with_minutes_that_are_not_minutes_are_undecodable(minute: int) -> None:
    frame = next(f for f in _frames() if f.partials)
    p = frame.partials[0]
    moved = Partial(
        p.kind,
        p.values,
        np.full_like(p.minute, minute),
        p.value_idx,
        p.packets,
        np.full_like(p.pair_minute, minute),
        p.pair_value_idx,
        p.pair_addr,
    )
    data = encode_frame(CODEC, frame._replace(partials=(moved, *frame.partials[1:])))
    with pytest.raises(UndecodableMessage, match="not minutes"):
        decode_frame(CODEC, data)
