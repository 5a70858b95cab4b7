"""The canonical properties text: what the mirror stores and hashes must not depend on the encoder that wrote it."""

from __future__ import annotations

import json
import random

from sources.extraction import content_hash, properties_json

reference = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def test_properties_text_is_the_json_modules_for_every_value():
    rng = random.Random(2026)
    odd = ["é", "\u2028\u2029", "\x7f\x1f\b\f\n\r\t", '"\\/', "😀", "\x00", "\ud800", " ", "", "1e-05", "0.00001"]
    for _ in range(5000):
        props = {
            rng.choice(odd[:6]) + f"p{i}": "".join(rng.choice(odd) for _ in range(rng.randint(0, 3))) for i in range(6)
        }
        if rng.random() < 0.2:  # values HubSpot does not send as properties, still written exactly
            props["n"] = rng.choice([1e-05, 0.5, 2**80, True, None, ["a"], {"b": float("inf")}])
        assert properties_json(props) == reference(props), props
    assert properties_json({7: "a key that is not a string"}) == '{"7":"a key that is not a string"}'


def test_the_hash_of_a_record_is_the_hash_of_its_text():
    props = {"firstname": "Zoë", "lastname": "O'Brien", "email": "zoe@example.com"}
    text = properties_json(props)
    assert content_hash(props, False) == content_hash(text, False) != content_hash(text, True)
    assert text == '{"email":"zoe@example.com","firstname":"Zoë","lastname":"O\'Brien"}'
