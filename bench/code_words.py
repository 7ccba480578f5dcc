"""Do the confirmation code words survive speech? piper (the test voice) → the engine's Whisper.

Each code word is spoken alone and as "the code word is X", transcribed with the engine's
settings, once without context and once with the confirmation prompt as Whisper's previous
text (what the engine gives it: the agent's last words). Run:
``.venv/bin/python bench/code_words.py [--stt-window-s 20]``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugin"))

from voice_channel.channel.confirmations import CODE_WORDS
from voice_channel.local_engine.models import whisper_model_dir
from voice_channel.local_engine.probe import SpeechMaker
from voice_channel.local_engine.stt import Transcriber


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stt-window-s", type=float, default=20.0)
    parser.add_argument("--words", nargs="*", help="candidate words to try instead of CODE_WORDS")
    args = parser.parse_args()
    words = tuple(args.words) if args.words else CODE_WORDS
    speak = SpeechMaker("piper")
    stt = Transcriber(whisper_model_dir(), window_s=args.stt_window_s)
    failing = set()
    print(f"window {args.stt_window_s}s; columns: alone / alone+prompt / phrase / phrase+prompt")
    for word in words:
        prompt = (
            f'Confirmation needed: Clear your whole list. To go ahead, say the code word "{word}". To cancel, say no.'
        )
        cells = []
        for text in (f"{word.capitalize()}.", f"The code word is {word}."):
            pcm = speak(text)
            for context in ("", prompt):
                heard = stt.transcribe(pcm, context).text
                ok = word in re.sub(r"[^a-z ]", " ", heard.lower()).split()
                if not ok:
                    failing.add(word)
                cells.append(("ok" if ok else "NO") + f" {heard!r}")
        print(f"{word:8s} | " + " | ".join(cells))
    print(f"\nfailing at least once: {sorted(failing)}")
    print(f"always recognised: {[w for w in words if w not in failing]}")


if __name__ == "__main__":
    main()
