"""Property tests of the LLM answer doors: any answer text, response body or Retry-After header gives a result or
a ValueError, and every judged answer can be stored in a shard."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modeling_scot.triplets.backend import CaptionRequest
from modeling_scot.triplets.chat import ChatBackend, Completion
from modeling_scot.triplets.openai_backend import MAX_RETRY_AFTER, parse_answer, retry_after_seconds
from modeling_scot.triplets.record import TripletRecord
from modeling_scot.triplets.shards import attempt_row
from modeling_scot.triplets.validation import REJECTION_REASONS, Deduplicator, Rejected, TripletValidator, extract_json_object

PROPERTIES = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=200)  # lone surrogates included
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
FIELDS = ("modification", "modified_caption", "hard_negatives")
ANSWER_OBJECTS = st.dictionaries(st.sampled_from(FIELDS) | ANY_TEXT, JSON | ANY_TEXT | st.lists(ANY_TEXT, max_size=4), max_size=4)


def dumped(value) -> str:
    return json.dumps(value, allow_nan=True)


ANSWERS = (
    ANY_TEXT
    | JSON.map(dumped)
    | ANSWER_OBJECTS.map(dumped)
    | st.tuples(ANY_TEXT, ANSWER_OBJECTS.map(dumped), ANY_TEXT).map(lambda parts: f"{parts[0]}```json\n{parts[1]}\n```{parts[2]}")
)
DEEP = '{"a":' * 3000 + "1" + "}" * 3000  # nested deeper than the JSON parser recurses, within the answer bound


class ScriptedAnswer(ChatBackend):
    """A chat backend whose model always answers `answer`: the prompting, judging and validation are the real ones."""

    name = "scripted"

    def __init__(self, answer: str) -> None:
        super().__init__("scripted-model", num_hard_negatives=2)
        self.answer = answer

    def complete(self, conversations: Sequence[list[dict[str, str]]], seeds: Sequence[int]) -> list[Completion]:
        return [Completion(self.answer) for _ in conversations]


REQUEST = CaptionRequest("img-1", "img-1.jpg", "a blue car on a road", 0)


@PROPERTIES
@given(ANSWERS)
@example(DEEP)
@example('{"modification": "\\ud800 make it red", "modified_caption": "a red car", "hard_negatives": []}')
@example('{"modification": "make it red", "modified_caption": "a red car", "hard_negatives": ["\\udfff"]}')
def test_the_validator_gives_a_record_or_a_rejection(answer):
    try:
        record = TripletValidator(num_hard_negatives=2).parse(answer, REQUEST)
    except Rejected as rejected:
        assert rejected.reason in REJECTION_REASONS
        return
    assert isinstance(record, TripletRecord) and record.modification.strip() and record.modified_caption.strip()
    assert len(record.hard_negatives) <= 2 and all(isinstance(text, str) for text in record.hard_negatives)


@PROPERTIES
@given(ANSWERS)
@example(DEEP)
def test_one_json_object_or_a_rejection(text):
    try:
        assert isinstance(extract_json_object(text), dict)
    except Rejected as rejected:
        assert rejected.reason == "invalid_json"


@PROPERTIES
@given(ANSWERS | st.just(DEEP) | st.just("\ud800{}"))
def test_every_judged_answer_can_be_stored_in_a_shard_row(answer):
    backend = ScriptedAnswer(answer)
    [attempt] = backend.attempt([REQUEST])
    assert (attempt.record is None) == (attempt.reason in REJECTION_REASONS)
    row = attempt_row(0, attempt, backend.settings())
    json.dumps(row, ensure_ascii=False).encode("utf-8")  # what the shard writer does
    if attempt.record is not None:
        assert Deduplicator().add(attempt.record.source_id, attempt.record.modification, attempt.record.modified_caption)


BODIES = (
    st.binary(max_size=200)
    | JSON.map(lambda value: dumped(value).encode())
    | JSON.map(lambda content: dumped({"choices": [{"message": {"content": content}}]}).encode())
    | st.just(("[" * 100000).encode())
    | st.just(b'{"choices": [{"message": {"content": "\\ud800"}}]}')
)


@PROPERTIES
@given(BODIES)
def test_a_response_body_gives_its_answer_or_a_value_error_naming_the_server(body):
    try:
        text = parse_answer(body, "http://127.0.0.1:9/v1/chat/completions")
    except ValueError as err:
        assert "http://127.0.0.1:9/v1/chat/completions" in str(err)
        return
    assert isinstance(text, str)


@PROPERTIES
@given(ANY_TEXT | st.floats().map(str) | st.sampled_from(["inf", "-inf", "nan", "1e400", "Wed, 21 Oct 2015 07:28:00 -0000"]))
@example("Fri, 31 Dec 9999 23:59:59 +9999")
@example("Mon, 01 Jan 0001 00:00:00 GMT")
def test_a_retry_after_header_gives_a_bounded_wait(value):
    seconds = retry_after_seconds(value)
    assert math.isfinite(seconds) and 0 <= seconds <= MAX_RETRY_AFTER
