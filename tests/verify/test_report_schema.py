"""A report is checked against its schema once, at load: every malformed report is a one-line
NettrimError naming the field (the CLI's exit 2), and every single-field mutation of a report
either fails that check or fails verification (exit 1), never "hold" and never a traceback."""
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verify_helpers import refused
from mutations import mutations, paths
from nettrim.errors import NettrimError
from nettrim.report.schema import load_report


def _set(*path, value):
    def edit(r):
        node = r
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _del(*path):
    def edit(r):
        node = r
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return edit


MALFORMED = [
    ("calibration given as a string", _set("run", value="calibration.pt"), "report.run must be a record"),
    ("certificate without fields", _set("layers", 0, "certificate", value={}), "report.layers[0].certificate has no field 'claim'"),
    ("certificate without its limit", _del("layers", 1, "certificate", "limit"), "has no field 'limit'"),
    ("epsilon 'abc'", _set("layers", 0, "certificate", "epsilon", value="abc"), "report.layers[0].certificate.epsilon must be"),
    ("a layer without info", _del("layers", 2, "info"), "report.layers[2] has no field 'info'"),
    ("samples 'many'", _set("run", "inputs", value="many"), "report.run.inputs must be an integer"),
    ("settings None", _set("method", "settings", value=None), "report.method: NetTrim.settings must be"),
    ("an unknown method option", _set("method", "bogus", value=1), "NetTrim has no option 'bogus'"),
    ("an unknown method", _set("method", "name", value="sideways"), "report.method.name must be one of"),
    ("mode sideways", _set("mode", value="sideways"), "report.mode must be one of 'cascade', 'parallel'"),
    ("no layers", _set("layers", value=[]), "report.layers must be a list"),
    ("layers a string", _set("layers", value="all"), "report.layers must be a list"),
    ("a layer a number", _set("layers", 1, value=5), "report.layers[1] must be a record"),
    ("no digests", _del("digests"), "report has no field 'digests'"),
    ("a digest not hexadecimal", _set("digests", "original", value="abc"), "report.digests.original must be a sha256"),
    ("a layer digest missing", _del("digests", "layers", "3"), "one digest for each layer"),
    ("relu 'yes'", _set("layers", 0, "relu", value="yes"), "report.layers[0].relu must be True or False"),
    ("a negative count", _set("layers", 0, "nnz_after", value=-1), "report.layers[0].nnz_after must be an integer >= 0"),
    ("a fractional count", _set("nnz_after", value=12.5), "report.nnz_after must be an integer"),
    ("a NaN norm", _set("layers", 1, "target_norm", value=math.nan), "report.layers[1].target_norm must be a finite"),
    ("an infinite bound", _set("bound", value=math.inf), "report.bound must be a finite"),
    ("an unknown status", _set("layers", 0, "status", value="great"), "report.layers[0].status must be one of"),
    ("an unknown field", _set("verified", value=True), "report has an unknown field 'verified'"),
    ("radii a string", _set("layers", 0, "certificate", "radii", value="abc"), "certificate.radii must be a list"),
    ("theta 2", _set("layers", 0, "certificate", "theta", value=2.0), "certificate.theta must be a finite number"),
    ("holds 'true'", _set("layers", 0, "certificate", "holds", value="true"), "certificate.holds must be True or False"),
    ("a negative seed", _set("run", "options", "seed", value=-1), "report.run.options.seed must be"),
    ("counts a list", _set("run", "counts", value=[1]), "report.run.counts must be a dict"),
    ("sparsity 2", _set("run", "sparsity", value=2.0), "report.run.sparsity must be"),
    ("a layer twice", lambda r: r["layers"].append(dict(r["layers"][0])), "names layer '1' twice"),
]


@pytest.mark.parametrize("what, edit, message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_report_is_one_line_naming_the_field(cascade, what, edit, message):
    text = refused(cascade, report=cascade.edited(edit))
    assert isinstance(text, str) and message in text, text


@pytest.mark.parametrize("report", [None, [], "report.json", 3, {"layers": []}])
def test_a_report_that_is_not_a_record_is_one_line(cascade, report):
    with pytest.raises(NettrimError) as info:
        load_report(report)
    assert "\n" not in str(info.value) and str(info.value).startswith("report")


def test_the_schema_keeps_what_it_checked(cascade):
    claims = load_report(cascade.report)
    assert type(claims["method"]).__name__ == "NetTrim" and claims["method"].epsilon == 0.3
    assert [layer["name"] for layer in claims["layers"]] == ["1", "3", "5"]


_QUICK = settings(max_examples=20, derandomize=True, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@_QUICK
@given(data=st.data())
def test_any_single_field_mutation_is_refused(cascade, data):
    cases = _cases(cascade)
    what, report = data.draw(st.sampled_from(cases), label="mutation")
    refused(cascade, what, report=report)


def _cases(pruned):
    key = id(pruned)
    if key not in _CASES:
        _CASES[key] = list(mutations(pruned.report))
    return _CASES[key]


_CASES = {}


@pytest.mark.slow
def test_every_single_field_mutation_is_refused(pruned):
    """Every case of ``mutations`` on each mode's report (several hundred verify runs)."""
    outcomes = {"error": 0, "fail": 0}
    for what, report in mutations(pruned.report):
        got = refused(pruned, what, report=report)
        outcomes["error" if isinstance(got, str) else "fail"] += 1
    assert outcomes["error"] > 100 and outcomes["fail"] > 100, outcomes


def test_the_mutations_reach_every_claim_of_every_layer(cascade):
    reached = {p[-1] for p in paths(cascade.report) if p[:1] == ("layers",)}
    for field in ("nnz_after", "discrepancy", "certified", "epsilon", "relative_epsilon", "holds", "gap"):
        assert field in reached
    assert not reached & {"seconds", "solver", "info"}
