"""Speech shaping: from a runtime's stream to speakable, phrase-sized chunks."""

from voice_channel.channel.speech.chunking import PhraseChunker
from voice_channel.channel.speech.extract import extract_text
from voice_channel.channel.speech.shaping import SpeechShaper, shape_text

__all__ = ["PhraseChunker", "SpeechShaper", "extract_text", "shape_text"]
