"""docs/experiments.md is what the committed experiment JSON gives: every generated block
(each experiment's section and the claims table) equals ``markdown_section`` / the claims
rules of docs/data/*.json, and every block has its data and its figure."""
import re

import pytest

from nettrim.experiments import docs
from nettrim.experiments.claims import VERDICTS
from nettrim.experiments.registry import MODULES


@pytest.fixture(scope="module")
def payloads():
    return docs.load_payloads()


def test_every_block_has_its_data_and_figure(payloads):
    text = docs.DOC.read_text()
    blocks = set(re.findall(r"<!-- BEGIN experiment:([\w-]+) -->", text))
    assert blocks == set(payloads) | {"claims"}
    for name in payloads:
        assert payloads[name]["preset"] == "full" and len(payloads[name]["seeds"]) >= 3
        assert (docs.FIGURES / MODULES[name].PNG_NAME).read_bytes()[:4] == b"\x89PNG"


def test_committed_doc_equals_the_generated_one(payloads):
    text = docs.DOC.read_text()
    assert docs.render(text, docs.sections(payloads)) == text


def test_claims_have_a_known_verdict(payloads):
    table = docs.sections(payloads)["claims"].splitlines()[2:]
    assert len(table) >= len(payloads)
    for row in table:
        assert row.split(" | ")[1] in VERDICTS, row
