"""Full-text search of solutions, the parts shared with the screen pop's raw read path (no ORM, no imports of
other domains): the indexed document's expression, the words of a query, the pop's suggestion query."""

from __future__ import annotations

import re

MAX_QUERY_WORDS = 12
_WORD = re.compile(r"\w+", re.UNICODE)

# the expression the migration's GIN index is built on (PostgreSQL); keep the two the same
POSTGRES_DOCUMENT = (
    "(setweight(to_tsvector('english', coalesce(kb_solutions.title, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(kb_solutions.tags, '') || ' ' || coalesce(kb_solutions.body, '')), 'B'))"
)
# words that say nothing about what a ticket is about (a suggestion matches on the others)
_STOP_WORDS = frozenset(
    "a an and are as at be but by can cannot could do does for from has have how i in is it its my no not of on or "
    "our please the this that to was we what when where which why will with you your".split()
)


def query_words(query: str, *, drop_stop_words: bool = False) -> list[str]:
    words = [w.lower() for w in _WORD.findall(query or "")]
    if drop_stop_words:
        words = [w for w in words if w not in _STOP_WORDS and len(w) > 1]
    unique: list[str] = []
    for word in words:
        if word not in unique:
            unique.append(word)
    return unique[:MAX_QUERY_WORDS]


# the screen pop's suggestions for a caller's newest open ticket (CallerIdLookup's raw read path: one parameter, the
# match text built by pop_match). Built from constants only; the one value is a bound parameter.
_POP_DOCUMENT = POSTGRES_DOCUMENT.replace("kb_solutions.", "s.")
POP_SUGGESTIONS_SQL = {
    "sqlite": "SELECT s.id, s.title FROM kb_solutions_fts AS f JOIN kb_solutions AS s ON s.search_key = f.rowid "
    "WHERE kb_solutions_fts MATCH {} AND s.status = 'published' "
    "ORDER BY bm25(kb_solutions_fts, 10.0, 5.0, 1.0), s.updated_at DESC LIMIT 3",
    "postgresql": "SELECT s.id, s.title FROM kb_solutions AS s, to_tsquery('english', {}) AS q "  # noqa: S608
    f"WHERE s.status = 'published' AND {_POP_DOCUMENT} @@ q "
    f"ORDER BY ts_rank({_POP_DOCUMENT}, q) DESC, s.updated_at DESC LIMIT 3",
}


def pop_match(subject: str, dialect: str) -> str | None:
    """The parameter of POP_SUGGESTIONS_SQL for a ticket's subject (any of its words), None when it has none."""
    words = query_words(subject, drop_stop_words=True)
    if not words:
        return None
    if dialect == "postgresql":
        return " | ".join("'" + w.replace("'", "") + "'" for w in words)
    return " OR ".join('"' + w.replace('"', "") + '"' for w in words)
