"""Opt-out, opt-in and help keywords in a customer's text, the way carriers and Twilio read them: the first word,
any case, surrounding spaces and punctuation ignored, a few words after it allowed ("Stop. Thank you")."""

from __future__ import annotations

import re
from enum import StrEnum

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN = frozenset({"START", "UNSTOP"})
HELP = frozenset({"HELP"})
MAX_TRAILING_WORDS = 4  # "Stop. Thank you" is an opt-out; "end of the month I'll call you back" is not
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)


class Keyword(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


def keyword_of(body: str) -> tuple[Keyword, str] | None:
    """The keyword a text is (and the word as written, upper-cased), or None for an ordinary message."""
    words = _WORD.findall(body or "")
    if not words or len(words) - 1 > MAX_TRAILING_WORDS:
        return None
    first = words[0].upper()
    if first in OPT_OUT:
        return Keyword.OPT_OUT, first
    if first in OPT_IN:
        return Keyword.OPT_IN, first
    if first in HELP:
        return Keyword.HELP, first
    return None
