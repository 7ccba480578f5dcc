"""The ``demo`` runtime: a small, deterministic list assistant (no LLM).

It lets a person try the whole flow offline, confirmations included:

* "add X" / "add X to my list" → "Added X."
* "what is on my list" / "read my list" → the items, or that the list is empty
* "remove X" → asks for a normal confirmation; yes → "Removed X."; no → X stays
* "clear my list" → asks for a high-risk confirmation (a code word); only then "Cleared your list."
* "sort my list" → runs a slow fake tool (3 s, reported as :class:`ToolActivity`), so that the
  channel's progress speech ("Let me check that.") can be heard; then "Sorted: ..."
* anything else → one sentence of help

Its parsing is deterministic and only ever *acts* through a confirmation the channel asked and
decided: a request phrased to pre-approve itself ("remove milk, I already confirmed") still asks.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator

from voice_channel.channel.intents import normalize_words
from voice_channel.markers import hookimpl
from voice_channel.runtime import (
    ConfirmationDecision,
    ConfirmationRequest,
    ConversationContext,
    RuntimeEvent,
    RuntimeMessage,
    TextDelta,
    ToolActivity,
    ToolPhase,
)
from voice_channel.settings import Settings

HELP = "I can add, read, remove or clear items on your list. Try saying: add milk."

_POLITE = r"(?:please |can you |could you )?"
_LIST = r"(?:my|the) (?:whole |entire |shopping )?list"
_ADD = re.compile(rf"^{_POLITE}(?:add|put) (?P<item>.+?)(?: (?:to|on|onto) {_LIST})?(?: please)?$")
_READ = re.compile(
    rf"^(?:please )?(?:what'?s|what is|what s|read|tell me|list|say) (?:(?:on|in) )?(?:me )?{_LIST}(?: please)?$"
    r"|^(?:read|what'?s on) (?:it|my list)$"
)
_REMOVE = re.compile(rf"^{_POLITE}(?:remove|delete|take off|cross off|drop)\b")
_CLEAR = re.compile(rf"^{_POLITE}(?:clear|empty|wipe|erase|delete) (?:all of |everything on )?{_LIST}\b")
_SORT = re.compile(rf"^{_POLITE}(?:sort|order|alphabeti[sz]e) {_LIST}\b")
_ARTICLES = re.compile(r"^(?:the|a|an|some) ")


def _spoken_list(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + f" and {items[-1]}"


class DemoSession:
    """One conversation's list, and the requests it is waiting on."""

    #: How long the fake "sort" tool takes: long enough for the progress speech to be heard.
    sort_s = 3.0

    def __init__(self) -> None:
        self.items: list[str] = []
        self._decisions: dict[str, ConfirmationDecision] = {}
        self._ids = itertools.count(1)

    async def respond(self, message: RuntimeMessage) -> AsyncIterator[RuntimeEvent]:
        words = normalize_words(message.text)
        if _CLEAR.match(words):
            async for event in self._clear():
                yield event
        elif _SORT.match(words):
            async for event in self._sort():
                yield event
        elif _REMOVE.match(words):
            async for event in self._remove(words):
                yield event
        elif match := _ADD.match(words):
            item = _ARTICLES.sub("", match.group("item")).strip()
            if item in self.items:
                yield TextDelta(f"{item.capitalize()} is already on your list.")
            else:
                self.items.append(item)
                yield TextDelta(f"Added {item}.")
        elif _READ.match(words):
            if self.items:
                yield TextDelta(f"Your list has {_spoken_list(self.items)}.")
            else:
                yield TextDelta("Your list is empty.")
        else:
            yield TextDelta(HELP)

    async def _sort(self) -> AsyncIterator[RuntimeEvent]:
        if not self.items:
            yield TextDelta("Your list is empty.")
            return
        # A stand-in for a slow tool (a search, a shell command): the channel fills the wait.
        call_id = f"sort-{next(self._ids)}"
        yield ToolActivity(ToolPhase.START, "sort_list", call_id)
        await asyncio.sleep(self.sort_s)
        self.items.sort()
        yield ToolActivity(ToolPhase.END, "sort_list", call_id)
        yield TextDelta(f"Sorted: {_spoken_list(self.items)}.")

    async def _remove(self, words: str) -> AsyncIterator[RuntimeEvent]:
        # The target is an item actually on the list, found in what was said; nothing else said
        # in the same breath ("and yes, I confirm") counts for anything.
        target = next((item for item in self.items if re.search(rf"\b{re.escape(item)}\b", words)), None)
        if target is None:
            yield TextDelta("That is not on your list." if self.items else "Your list is empty.")
            return
        request = ConfirmationRequest(id=f"remove-{next(self._ids)}", action=f"Remove {target} from your list")
        yield request
        if self._approved(request.id):
            self.items.remove(target)
            yield TextDelta(f"Removed {target}.")
        else:
            yield TextDelta(f"Okay, I kept {target}.")

    async def _clear(self) -> AsyncIterator[RuntimeEvent]:
        if not self.items:
            yield TextDelta("Your list is already empty.")
            return
        count = len(self.items)
        request = ConfirmationRequest(
            id=f"clear-{next(self._ids)}",
            action="Clear your whole list",
            summary=f"It has {count} item{'s' if count != 1 else ''}.",
            risk="high",
        )
        yield request
        if self._approved(request.id):
            self.items.clear()
            yield TextDelta("Cleared your list.")
        else:
            yield TextDelta("Okay, I kept your list.")

    def _approved(self, request_id: str) -> bool:
        decision = self._decisions.pop(request_id, None)
        return decision is not None and decision.approved

    async def resolve(self, request_id: str, decision: ConfirmationDecision) -> None:
        self._decisions[request_id] = decision

    async def aclose(self) -> None:
        self._decisions.clear()


class DemoRuntime:
    name = "demo"

    def __init__(self, settings: Settings) -> None:
        del settings

    async def start(self) -> None:
        """Nothing to start."""

    async def open_session(self, context: ConversationContext) -> DemoSession:
        return DemoSession()

    async def aclose(self) -> None:
        """Nothing to release."""


@hookimpl
def voice_channel_register_runtimes(register):  # type: ignore[no-untyped-def]
    register("demo", DemoRuntime, "A deterministic list assistant with spoken confirmations (offline demo).")
