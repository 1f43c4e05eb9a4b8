"""The prompt filter and the safety store: what is refused, what is not, and what moderators can change."""

from __future__ import annotations

import pytest

from bot.engine.types import GenerationRequest, JobKind
from bot.errors import InvalidRequest, NotAllowed, PromptRefused, ReviewError
from bot.safety.store import SafetyStore
from bot.safety.terms import DEFAULT_TERMS, TermList, minors_match

DEFAULTS = TermList(dict.fromkeys(DEFAULT_TERMS, "default"))


@pytest.mark.parametrize(
    "prompt",
    [
        "a NUDE woman on a beach",  # case
        "n u d e portrait",  # letters spelt out
        "s.e.x scene",  # punctuation inside the word
        "n-a-k-e-d man",
        "p0rn star",  # leetspeak
        "$3xy pose",
        "h3nt@i style",
        "l1ngerie model",
        "nuuuude",  # repeated letters
        "two nudes",  # plural
        "girl,naked",  # punctuation between words
        "Nüde ｎｕｄｅ",  # accents and full-width letters
        "a deepfake of my neighbour",
        "a deep-fake of a senator",
        "revengeporn",  # a two-word term typed as one
    ],
)
def test_obfuscated_defaults_are_caught(prompt):
    assert DEFAULTS.find(prompt) is not None, prompt


@pytest.mark.parametrize(
    "prompt",
    [
        "a castle at dusk",
        "a class of assistants in Essex with a sextant",  # 'ass' and 'sex' only inside other words
        "a pen is on the table",  # neighbouring words are never joined into a term
        "4 cats and 3 dogs",  # digits on their own stay numbers
        "a comic strip for kids",
        "Sussex coastline, expert photography",
    ],
)
def test_innocent_prompts_pass(prompt):
    assert DEFAULTS.find(prompt) is None and minors_match(prompt) is None, prompt


def test_a_term_never_matches_a_shorter_word():
    """A server term 'ass' catches 'asss' and 'the ass', never 'as' or 'class'."""
    terms = TermList({"ass": "server"})
    assert terms.find("the ass") and terms.find("asss") and terms.find("A$$")
    assert terms.find("as good as it gets") is None and terms.find("first class") is None


@pytest.mark.parametrize(
    "prompt",
    [
        "a sexy schoolgirl",
        "10yo nude",
        "a 12-year-old in lingerie",
        "kids, naked",
        "loli",
        "1oli art",
        "sh0ta",
    ],
)
def test_sexual_content_involving_minors_is_caught(prompt):
    assert minors_match(prompt) is not None, prompt


@pytest.mark.parametrize(
    "prompt", ["a child playing in the park", "a 25 year old nude model", "baby elephant"]
)
def test_minors_rule_needs_both_a_minor_and_sexual_content(prompt):
    assert minors_match(prompt) is None, prompt


@pytest.fixture
def store(db) -> SafetyStore:
    now = [1_000_000.0]
    store = SafetyStore(db, reviews_per_day=5, clock=lambda: now[0])
    store.now = now  # type: ignore[attr-defined]
    return store


async def test_moderator_terms_are_per_server(store):
    await store.add_term(1, "Dragon  Fire", by=9)
    with pytest.raises(PromptRefused) as refused:
        await store.check_prompt(1, "a dragon fire breathing")
    assert "dragon" in str(refused.value) and refused.value.reviewable
    await store.check_prompt(2, "a dragon fire breathing")  # another server: not blocked
    with pytest.raises(PromptRefused):
        await store.check_prompt(1, "a DR4G0N-FIRE")
    assert (await store.terms(1)).added == ["dragon fire"]


async def test_default_terms_can_be_removed_and_restored(store):
    with pytest.raises(PromptRefused):
        await store.check_prompt(1, "a nude statue")
    await store.remove_term(1, "nude", by=9)
    await store.check_prompt(1, "a nude statue")
    assert "nude" in (await store.terms(1)).removed_defaults
    await store.add_term(1, "nude", by=9)
    with pytest.raises(PromptRefused):
        await store.check_prompt(1, "a nude statue")


async def test_the_minors_rule_cannot_be_removed(store):
    with pytest.raises(NotAllowed, match="cannot be turned off"):
        await store.remove_term(1, "child", by=9)
    for term in ("sexy", "nsfw", "lingerie", "naked", "nude", "sex"):
        await store.remove_term(1, term, by=9)
    with pytest.raises(PromptRefused) as refused:
        await store.check_prompt(1, "a sexy schoolgirl")
    assert not refused.value.reviewable and "minors" in str(refused.value)


@pytest.mark.parametrize("term", ["", "x", "!!!", "y" * 61])
async def test_unusable_terms_are_refused_with_the_reason(store, term):
    with pytest.raises(InvalidRequest):
        await store.add_term(1, term, by=9)
    assert (await store.terms(1)).added == []


async def test_removing_an_unknown_term_says_so(store):
    with pytest.raises(InvalidRequest, match="not on this server's list"):
        await store.remove_term(1, "castle", by=9)


def _request(prompt: str = "a nude statue") -> GenerationRequest:
    return GenerationRequest(JobKind.IMAGINE, prompt, 64, 64, 4, 7.0, seed=1)


async def test_review_requests_are_limited_per_member_per_day(store):
    ids = [await store.offer(1, 5, 10, _request(), "refused") for _ in range(7)]
    for review_id in ids[:5]:
        assert (await store.request_review(review_id, 5)).status == "pending"
    with pytest.raises(ReviewError, match="5 reviews a day"):
        await store.request_review(ids[5], 5)
    store.now[0] += 86_401  # a day later the member may ask again
    assert (await store.request_review(ids[5], 5)).status == "pending"


async def test_only_the_refused_member_can_ask_and_only_once(store):
    review_id = await store.offer(1, 5, 10, _request(), "refused")
    with pytest.raises(NotAllowed):
        await store.request_review(review_id, 6)
    await store.request_review(review_id, 5)
    with pytest.raises(ReviewError, match="already asked"):
        await store.request_review(review_id, 5)


async def test_a_review_is_decided_once(store):
    review_id = await store.offer(1, 5, 10, _request(), "refused")
    await store.request_review(review_id, 5)
    review = await store.decide(review_id, 9, approve=True)
    assert review.status == "approved" and review.request.prompt == "a nude statue"
    with pytest.raises(ReviewError, match="already approved"):
        await store.decide(review_id, 8, approve=False)
