"""Rules that read what a card says, not only whether a field is filled.

A field holding a placeholder ("TBD", "n/a", "todo", "-") is as good as empty; a field where a paragraph
is due needs more than a few words. A validator who is the author, or who calls the validation their
own, is no independent review; a sensitive feature with one group (or one group big enough to
compare) measures nothing; "automatically decline" describes decisions no person can override.
"""

from __future__ import annotations

import re

# The whole value is one of these (punctuation around it ignored).
_WHOLE = re.compile(
    r"^\W*(tbd|tba|tbc|todo|to do|n/?a|na|none|nil|null|unknown|pending|placeholder|wip|later|same as above|see above|"
    r"coming soon|not yet|to be (determined|defined|decided|confirmed|added|completed|written|filled)|fill (in|me|this))?\W*$",
    re.IGNORECASE)
# These words mark a value as unfinished wherever they stand.
_MARKER = re.compile(r"\b(tbd|tbc|todo|fixme|xxx+|lorem ipsum)\b", re.IGNORECASE)
# Where a paragraph is due, fewer words than this is not one.
MIN_WORDS = 6
PARAGRAPHS = {"model_details.description", "intended_use.human_oversight", "intended_use.contest", "data.provenance",
              "data.deidentification", "deployment.monitoring", "deployment.logging", "deployment.access_control"}
_SELF = re.compile(
    r"\bself[- ]?(validat|review|approv|assess|check|certif)\w*|"
    r"\b(validated|reviewed|approved|checked|signed off) by (the )?(same )?(developer|author|model owner|modell?er|data scientist|"
    r"builder|development team|model developer)s?\b", re.IGNORECASE)
_AUTOMATIC = re.compile(r"\bautomatic(ally)?\s+(declin|reject|deny|denie|denial|refus|terminat|cancel|block|suspend)\w*",
                        re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def texts(value) -> list[str]:
    """The strings a user field holds: text, a list of texts, owners or risks (their names and notes)."""
    if value in (None, "", []):
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [str(v) for v in value.values() if v]
    if isinstance(value, list):
        return [t for item in value for t in texts(item)]
    return [str(value)]


def placeholder(text: str) -> bool:
    return bool(_WHOLE.match(text) or _MARKER.search(text))


def words(text: str) -> int:
    return len(re.findall(r"[^\W_]+", text))


def filled_problem(value, path: str) -> str | None:
    """Why a user field does not count as filled, or None."""
    if value in (None, "", []):
        return "not filled"
    items = value if isinstance(value, list) else [value]
    names = [texts(item)[0] if texts(item) else "" for item in items]
    held = [n for n in names if placeholder(n)]
    if held:
        return f"{held[0].strip()!r} is a placeholder, not an answer"
    if path in PARAGRAPHS:
        count = sum(words(t) for t in texts(value))
        if count < MIN_WORDS:
            return f"{count} word(s) where a paragraph is due (at least {MIN_WORDS})"
    return None


# -- who reviews -----------------------------------------------------------------------------------------
def _normal(text: str | None) -> str:
    return " ".join((text or "").casefold().split())


def identities(person: str | dict | None) -> set[str]:
    """What identifies a person: their name and e-mail, case and spacing ignored (and a login, for the author)."""
    if isinstance(person, dict):
        return {_normal(person.get(k)) for k in ("name", "email", "login") if person.get(k)} - {""}
    text = person or ""
    found = {m.group(0).casefold() for m in _EMAIL.finditer(text)}
    name = _normal(re.sub(r"<[^>]*>|\([^)]*\)", " ", _EMAIL.sub(" ", text)).strip(" ,;<>()"))
    return (found | {name}) - {""}


def same_person(reviewer: str, author: dict | None) -> bool:
    """Whether a reviewer (``"Name <email>"``, a name or an e-mail) is the author recorded at packaging."""
    return bool(author) and bool(identities(reviewer) & identities(author))


def names_author(text: str, author: dict | None) -> bool:
    """Whether free text (``validated_by``) names the author, by name or e-mail (a login is too short a word to look for)."""
    if not author:
        return False
    folded = _normal(text)
    for identity in identities({"name": author.get("name"), "email": author.get("email")}):
        if identity and re.search(rf"(?<![\w@.]){re.escape(identity)}(?![\w@])", folded):
            return True
    return False


def self_validation(card: dict) -> str | None:
    review = card.get("review") or {}
    validator = review.get("validated_by")
    if not validator:
        return None
    if _SELF.search(validator):
        return f"validated_by says {validator!r}: a developer validating their own model is no independent review"
    if names_author(validator, review.get("author")):
        return f"validated_by names the model's author ({_who(review['author'])}): validation must be independent of development"
    return None


def _who(author: dict) -> str:
    return author.get("name") or author.get("email") or author.get("login") or "?"


# -- what the card describes -----------------------------------------------------------------------------
def constant_sensitive(card: dict) -> str | None:
    """A sensitive feature with fewer than two groups large enough to compare measures no disparity."""
    summary = card["data"].get("sensitive_summary") or []
    poor = [s for s in summary if s["comparable_groups"] < 2]
    if not poor:
        return None
    described = "; ".join(
        f"{s['name']} is constant ({s['largest_group']!r})" if s["groups"] <= 1 else
        f"{s['name']} has {s['comparable_groups']} group(s) of at least {card['fairness'].get('small_group_threshold', 30)} rows "
        f"({s['largest_share']:.0%} are {s['largest_group']!r})" for s in poor)
    return f"{described}: no comparison between groups is possible"


def automatic_decisions(card: dict) -> str | None:
    use = card["intended_use"]
    for text in texts(use.get("primary_uses")) + texts(use.get("human_oversight")) + texts(card["model_details"].get("overview")):
        found = _AUTOMATIC.search(text)
        if found:
            return f"the card says the model is used to {found.group(0)!r} people, with no person deciding"
    return None
