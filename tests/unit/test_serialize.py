"""Each serializer's output, read back by the target language's own reader, is the value."""

from __future__ import annotations

import hcl2
import pytest
import yaml

from builder.render import serialize

from .hostile import HOSTILE, hcl_literal, shell_value

PRINTABLE = {k: v for k, v in HOSTILE.items() if k != "nul"}


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_hcl_string_is_inert_data(value):
    doc = hcl2.loads(f"a = {serialize.hcl_string(value)}\nb = 1\n")
    assert hcl_literal(doc["a"]) == value
    assert set(doc) == {"a", "b"}


def test_hcl_values_of_lists_and_maps():
    doc = hcl2.loads("a = " + serialize.hcl_value({"k": ["${x}", 3, True]}) + "\n")
    assert [hcl_literal(v) for v in doc["a"]['"k"'][:1]] == ["${x}"]
    assert doc["a"]['"k"'][1:] == [3, True]


def test_hcl_text_goes_inside_a_literal_of_the_template():
    doc = hcl2.loads('a = "' + serialize.hcl_text('"${x}"') + '${var.y}"\n')
    assert doc["a"] == '"\\"$${x}\\"${var.y}"'


@pytest.mark.parametrize("value", PRINTABLE.values(), ids=PRINTABLE.keys())
def test_shell_word_is_one_word_of_data(value):
    # sh cannot pass a NUL in an argument at all: specs refuse it at load.
    assert shell_value(serialize.shell_word(value)) == value
    assert shell_value(serialize.shell_word(value) + " " + serialize.shell_word("x")) == \
        value + "x"


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_yaml_value_stays_on_its_line(value):
    text = serialize.yaml_value(value)
    assert "\n" not in text
    assert yaml.safe_load(f"a: {text}\nb: 1\n") == {"a": value, "b": 1}


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_yaml_document_round_trips_even_when_nested(value):
    inner = serialize.yaml_document({"k": value, "list": [value]})
    outer = serialize.yaml_document({"content": inner, "after": 1})
    loaded = yaml.safe_load(outer)
    assert loaded["after"] == 1
    assert yaml.safe_load(loaded["content"]) == {"k": value, "list": [value]}
