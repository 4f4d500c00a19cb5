"""Every option of every options object refuses what its check says it refuses, in one line
naming the owner and the field (the table is read from the classes, so a new field is covered
without a new test)."""
import pytest

from nettrim.api import RunOptions
from nettrim.errors import NettrimError
from nettrim.methods import METHODS
from nettrim.search import SearchOptions
from nettrim.solvers.admm import ADMMSettings

OWNERS = [ADMMSettings, RunOptions, SearchOptions, *METHODS.values()]
CASES = [(cls, field, value) for cls in OWNERS for field, check in cls.CHECKS.items()
         for value, _why in check.wrong]


def test_every_owner_has_refusals_to_check():
    assert len(CASES) > 3 * len(OWNERS)
    for cls in OWNERS:
        fields = {f for c, f, _ in CASES if c is cls}
        assert fields == {f for f, check in cls.CHECKS.items() if check.wrong}


@pytest.mark.parametrize("cls,field,value", CASES, ids=lambda v: repr(v)[:40])
def test_wrong_value_is_one_line(cls, field, value):
    with pytest.raises(NettrimError) as info:
        cls(**{field: value})
    text = str(info.value)
    assert "\n" not in text and field in text and cls.__name__ in text


@pytest.mark.parametrize("cls", OWNERS, ids=lambda c: c.__name__)
def test_unknown_option_is_refused_with_the_known_ones(cls):
    with pytest.raises(NettrimError) as info:
        cls(bogus=1)
    assert "bogus" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("cls", OWNERS, ids=lambda c: c.__name__)
def test_defaults_pass_their_own_checks_and_objects_are_frozen(cls):
    obj = cls()
    assert cls(**{f: getattr(obj, f) for f in cls.CHECKS}) == obj
    for field in cls.CHECKS:
        with pytest.raises(AttributeError):
            setattr(obj, field, getattr(obj, field))
