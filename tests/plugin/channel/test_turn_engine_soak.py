"""Randomised soak of the turn engine: interleaved interruptions, re-sends and stale ids.

Each conversation sends a random mix of new transcripts (often before the previous reply ended),
re-sends of the current event id, and stale lower ids; the runtime streams with random pauses and
sometimes fails. Whatever the interleaving, the wire must satisfy the protocol's invariants.
"""

from __future__ import annotations

import asyncio
import random

from support import ScriptedPlugin, conversation
from voice_channel.runtime import TextDelta
from voice_channel.serving.keys import STATE


def _behaviour(seed: int):
    async def behaviour(message, rec):
        rng = random.Random(f"{seed}-{message.event_id}")
        for i in range(rng.randint(1, 12)):
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() / 500)  # the runtime is sometimes slow
            if rng.random() < 0.03:
                raise RuntimeError("random runtime failure")
            yield TextDelta(f"{message.event_id}:{i}, ")

    return behaviour


async def _one_conversation(channel, rng: random.Random) -> None:
    async with conversation(channel) as client:
        frames: list[dict] = []
        highest = 0
        for _ in range(30):
            roll = rng.random()
            if roll < 0.7 or highest == 0:
                highest = await client.say(f"turn {highest + 1}")
                if rng.random() < 0.5:
                    # Nothing was sent after this transcript: its final must come (sometimes we
                    # wait for it, sometimes the next transcript barges in).
                    reply = await client.reply(highest)
                    frames.extend(reply.foreign)
                    frames.extend({"event_id": highest, "content": c, "is_final": False} for c in reply.chunks)
                    frames.append({"event_id": highest, "content": "", "is_final": True})
                    client.heard(reply.text)
            elif roll < 0.85:
                await client.send_transcript(highest)  # a re-send of the current turn
            else:
                await client.send_transcript(rng.randint(0, max(0, highest - 1)))  # a stale id
        last = await client.say("the end")
        reply = await client.reply(last)
        frames.extend(reply.foreign)
        frames.append({"event_id": last, "content": "", "is_final": True})

    # The invariants ElevenLabs relies on, whatever the interleaving:
    newest = 0
    for frame in frames:
        event_id = frame["event_id"]
        assert event_id >= newest, f"a frame of turn {event_id} arrived after turn {newest} had started"
        newest = event_id
    # The last turn is answered: by the runtime, or by the apology when it (randomly) failed.
    assert reply.final
    assert reply.text.startswith(f"{last}:0, ") or reply.text.endswith("Sorry, something went wrong on my side.")


async def test_random_interleavings_keep_the_protocol_invariants(start_channel):
    plugin = ScriptedPlugin(_behaviour(seed=7))
    channel = await start_channel(
        plugins=[plugin], runtime="scripted", input={"max_turns_per_minute": 600}, turn={"stall_flush_ms": 1}
    )
    rng = random.Random(1234)
    await asyncio.gather(*(_one_conversation(channel, random.Random(rng.random())) for _ in range(8)))
    await asyncio.wait_for(plugin.recorder.wait_ended(8), 10)
    leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith(("turn-", "outbox-pump"))]
    assert leftover == []
    assert plugin.recorder.opened == plugin.recorder.closed == 8
    assert channel.app[STATE].conversations == {}
