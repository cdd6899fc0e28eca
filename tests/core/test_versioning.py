"""Versioning through the public API: the seed's printed versions, parsing, caching, fields."""

from __future__ import annotations

import hashlib
import pickle
import time

import pytest

from chariots_core import (
    BaseOp,
    ChariotsError,
    Version,
    VersionableMeta,
    VersionedField,
    VersionedFieldDict,
    VersionType,
)
from chariots_core.errors import InvalidVersionError

EMPTY = hashlib.sha1().hexdigest()


def short(version: Version) -> tuple[str, str, str]:
    """The 5-character prefixes the seed prints, major/minor/patch."""
    return version.major[:5], version.minor[:5], version.patch[:5]


# -- the seed's concrete versions (chapter 2.5 and the AddOp example of 2.1.2) ---------------
def test_empty_class_version_is_sha1_of_nothing():
    class MyVersionedClass(metaclass=VersionableMeta):
        pass

    version = MyVersionedClass.__version__
    assert (version.major, version.minor, version.patch) == (EMPTY, EMPTY, EMPTY)
    assert repr(version) == "<Version, major:da39a, minor: da39a, patch: da39a>"


@pytest.mark.parametrize(
    ("value", "expected_repr"),
    [
        (3, "<Version, major:94e72, minor: 36d3c, patch: 94e72>"),
        (5, "<Version, major:94e72, minor: 72101, patch: 94e72>"),
    ],
)
def test_minor_field_versions_match_the_seed(value, expected_repr):
    class MyVersionedClass(metaclass=VersionableMeta):
        foo = VersionedField(value, VersionType.MINOR)

    assert repr(MyVersionedClass.__version__) == expected_repr
    assert MyVersionedClass.foo == value


def test_field_version_follows_the_documented_algorithm():
    # A field version updates a fresh Version with sha1(str(value)).hexdigest(); a class adds
    # it to an empty Version: each subversion becomes sha1(empty_hex + field_hex).
    field_hex = hashlib.sha1(hashlib.sha1(b"3").hexdigest().encode()).hexdigest()
    expected_minor = hashlib.sha1((EMPTY + field_hex).encode()).hexdigest()
    expected_other = hashlib.sha1((EMPTY + EMPTY).encode()).hexdigest()

    class MyVersionedClass(metaclass=VersionableMeta):
        foo = VersionedField(3, VersionType.MINOR)

    version = MyVersionedClass.__version__
    assert version.minor == expected_minor
    assert version.major == version.patch == expected_other
    assert VersionedField(3, VersionType.MINOR).version.minor == field_hex


@pytest.mark.parametrize(
    ("number", "expected_repr"),
    [
        (3, "<Version, major:36d3c, minor: 94e72, patch: 94e72>"),
        (4, "<Version, major:8ad66, minor: 94e72, patch: 94e72>"),
    ],
)
def test_add_op_versions_match_the_seed(number, expected_repr):
    class AddOp(BaseOp):
        number_to_add = VersionedField(number, VersionType.MAJOR)

        def execute(self, op_input):
            return op_input + self.number_to_add

    assert repr(AddOp.__version__) == expected_repr
    assert AddOp.number_to_add == number
    assert AddOp().execute(3) == 3 + number
    assert AddOp().op_version == AddOp.__version__


def test_plain_class_attribute_does_not_version_an_op():
    class AddOp(BaseOp):
        number_to_add = 1

        def execute(self, op_input):
            return op_input + self.number_to_add

    assert AddOp().execute(3) == 4
    assert repr(AddOp.__version__) == "<Version, major:da39a, minor: da39a, patch: da39a>"


@pytest.mark.parametrize(
    ("foo", "blu", "expected_repr", "key", "expected_item"),
    [
        (1, 3, "<Version, major:ddf7a, minor: 1b365, patch: 68722>", "foo", 1),
        (10, 3, "<Version, major:ddf7a, minor: 1b365, patch: 18615>", "foo", 10),
        (1, 10, "<Version, major:d5abf, minor: 1b365, patch: 68722>", "blu", 10),
    ],
)
def test_versioned_field_dict_versions_match_the_seed(foo, blu, expected_repr, key, expected_item):
    class MyVersionedClass(metaclass=VersionableMeta):
        versioned_dict = VersionedFieldDict(
            VersionType.PATCH,
            {"foo": foo, "bar": 2, "blu": VersionedField(blu, VersionType.MAJOR)},
        )

    assert repr(MyVersionedClass.__version__) == expected_repr
    assert MyVersionedClass.versioned_dict[key] == expected_item


def test_changing_a_class_attribute_after_creation_keeps_the_version():
    class MyVersionedClass(metaclass=VersionableMeta):
        foo = VersionedField(5, VersionType.MINOR)

    before = MyVersionedClass.__version__
    MyVersionedClass.foo = 7
    assert MyVersionedClass.foo == 7
    assert MyVersionedClass.__version__ is before
    assert repr(MyVersionedClass.__version__) == "<Version, major:94e72, minor: 72101, patch: 94e72>"


def test_mutating_a_versioned_dict_after_creation_keeps_the_class_version():
    class MyVersionedClass(metaclass=VersionableMeta):
        params = VersionedFieldDict(VersionType.MAJOR, {"n": 1})

    before = MyVersionedClass.__version__
    MyVersionedClass.params["n"] = 2
    assert MyVersionedClass.__version__ is before
    assert MyVersionedClass.params.version != before  # the dict itself does see the change


# -- the class version is computed once -------------------------------------------------------
class CountingField(VersionedField):
    """A field that counts how often its version is computed."""

    computed = 0

    @property
    def version(self) -> Version:
        CountingField.computed += 1
        return super().version


def test_class_version_is_computed_once_per_class_not_per_access():
    CountingField.computed = 0

    class CachedOp(BaseOp):
        threshold = CountingField(0.5, VersionType.MINOR)

        def execute(self, value):
            return value > self.threshold

    assert CountingField.computed == 1
    first = CachedOp.__version__
    ops = [CachedOp() for _ in range(50)]
    versions = [op.op_version for op in ops] + [CachedOp.__version__ for _ in range(50)]
    assert all(version is first for version in versions)
    assert CountingField.computed == 1


def test_each_subclass_gets_its_own_version_computed_once():
    CountingField.computed = 0

    class Base(metaclass=VersionableMeta):
        a = CountingField(1, VersionType.MAJOR)

    class Child(Base):
        b = VersionedField(2, VersionType.PATCH)

    # Child sees the inherited field too, so the counter moves once per class creation.
    assert CountingField.computed == 2
    assert Child.__version__ is Child.__version__
    assert Child.__version__ != Base.__version__
    assert CountingField.computed == 2


# -- fields: inheritance, overriding, plain classes and ops ----------------------------------
def test_inherited_fields_count_and_subclass_fields_add_to_them():
    class Base(metaclass=VersionableMeta):
        a = VersionedField(1, VersionType.MAJOR)

    class Child(Base):
        b = VersionedField(2, VersionType.PATCH)

    class Flat(metaclass=VersionableMeta):
        a = VersionedField(1, VersionType.MAJOR)
        b = VersionedField(2, VersionType.PATCH)

    assert Child.a == 1 and Child.b == 2
    assert Child.__version__ == Flat.__version__
    assert Child.__version__ != Base.__version__


def test_subclass_overriding_a_field_replaces_it():
    class Base(metaclass=VersionableMeta):
        a = VersionedField(1, VersionType.MAJOR)

    class Overridden(Base):
        a = VersionedField(2, VersionType.MAJOR)

    class Direct(metaclass=VersionableMeta):
        a = VersionedField(2, VersionType.MAJOR)

    class Unversioned(Base):
        a = 5  # a plain attribute takes the field out of the version

    assert Overridden.__version__ == Direct.__version__
    assert Unversioned.a == 5
    assert Unversioned.__version__ == Version()


def test_fields_are_combined_in_attribute_name_order_not_definition_order():
    class First(metaclass=VersionableMeta):
        zed = VersionedField(1, VersionType.MAJOR)
        alpha = VersionedField(2, VersionType.MAJOR)

    class Second(metaclass=VersionableMeta):
        alpha = VersionedField(2, VersionType.MAJOR)
        zed = VersionedField(1, VersionType.MAJOR)

    expected = Version() + VersionedField(2, "major").version + VersionedField(1, "major").version
    assert First.__version__ == Second.__version__ == expected


def test_versioned_field_reads_the_same_on_instances_and_classes():
    class Op(BaseOp):
        factor = VersionedField([1, 2], VersionType.MINOR)

        def execute(self, value):
            return [value * f for f in self.factor]

    assert Op.factor == [1, 2]
    assert Op().factor == [1, 2]
    assert Op().execute(3) == [3, 6]


def test_versioned_field_accepts_the_subversion_name_as_a_string():
    assert VersionedField(3, "minor").version == VersionedField(3, VersionType.MINOR).version


def test_versioned_field_rejects_an_unknown_subversion_with_a_chariots_error():
    with pytest.raises(ChariotsError, match=r"'affected_version'.*'major', 'minor' or 'patch'.*'majr'"):
        VersionedField(3, "majr")
    with pytest.raises(ValueError):
        VersionedFieldDict("huge")


# -- VersionedFieldDict behaves like a dict ---------------------------------------------------
def test_versioned_field_dict_behaves_like_a_dict():
    params = VersionedFieldDict(VersionType.PATCH, {"foo": 1}, bar=2)
    params["blu"] = VersionedField(3, VersionType.MAJOR)
    assert params == {"foo": 1, "bar": 2, "blu": 3}
    assert dict(params) == {"foo": 1, "bar": 2, "blu": 3}
    assert len(params) == 3 and "bar" in params and "nope" not in params
    assert sorted(params) == ["bar", "blu", "foo"]
    assert params.get("nope", "default") == "default"
    assert {**params} == {"foo": 1, "bar": 2, "blu": 3}
    del params["bar"]
    assert list(params.items()) == [("foo", 1), ("blu", 3)]
    with pytest.raises(KeyError):
        params["bar"]
    assert params.pop("foo") == 1
    assert dict(params) == {"blu": 3}


def test_versioned_field_dict_default_is_major_and_items_keep_their_own_type():
    params = VersionedFieldDict(a=1)
    assert params.default_version is VersionType.MAJOR
    assert params.version_dict["a"] == VersionedField(1, VersionType.MAJOR).version
    mixed = VersionedFieldDict(VersionType.PATCH, {"a": VersionedField(1, VersionType.MINOR)})
    assert mixed.version_dict["a"] == VersionedField(1, VersionType.MINOR).version


def test_versioned_field_dict_update_changes_its_version_as_the_seed_shows():
    params = VersionedFieldDict(
        VersionType.PATCH, {"foo": 1, "bar": 2, "blu": VersionedField(3, VersionType.MAJOR)}
    )
    # A class holding only this dict has the dict's version: the seed's three classes.
    assert short(params.version) == ("ddf7a", "1b365", "68722")
    params["foo"] = 10
    assert short(params.version) == ("ddf7a", "1b365", "18615")
    params.update(foo=1, blu=VersionedField(10, VersionType.MAJOR))
    assert short(params.version) == ("d5abf", "1b365", "68722")


def test_versioned_field_dict_on_an_op():
    class ScaleOp(BaseOp):
        params = VersionedFieldDict(VersionType.MAJOR, {"factor": 2})

        def execute(self, value):
            return value * self.params["factor"]

    class ScaleOp3(BaseOp):
        params = VersionedFieldDict(VersionType.MAJOR, {"factor": 3})

    assert ScaleOp().execute(4) == 8
    assert ScaleOp.__version__.major != ScaleOp3.__version__.major
    assert ScaleOp.__version__.minor == ScaleOp3.__version__.minor


# -- Version: text, parsing, ordering, arithmetic ---------------------------------------------
def test_str_round_trips_through_parse():
    class MyVersionedClass(metaclass=VersionableMeta):
        foo = VersionedField(3, VersionType.MINOR)

    version = MyVersionedClass.__version__
    parsed = Version.parse(str(version))
    assert parsed == version
    assert (parsed.major, parsed.minor, parsed.patch) == (version.major, version.minor, version.patch)
    assert parsed.creation_time == version.creation_time
    assert str(parsed) == str(version)


def test_pickle_round_trips_a_version():
    version = Version().update_major(b"x")
    copy = pickle.loads(pickle.dumps(version))
    assert copy == version and copy.creation_time == version.creation_time


@pytest.mark.parametrize(
    "text",
    ["", "not a version", repr(Version()), "a_b_c_1.0", f"{EMPTY}_{EMPTY}_{EMPTY}_yesterday",
     f"{EMPTY}_{EMPTY}_{EMPTY}"],
)
def test_parse_rejects_what_str_did_not_make(text):
    with pytest.raises(ChariotsError, match="not a version string.*str\\(version\\)"):
        Version.parse(text)


def test_building_a_version_from_a_bad_digest_is_a_chariots_error():
    with pytest.raises(InvalidVersionError, match="'minor' must be a 40-character hex sha1.*parse"):
        Version(EMPTY, "abc", EMPTY)
    with pytest.raises(InvalidVersionError, match="'major' must be a 40-character hex sha1"):
        Version(3)
    with pytest.raises(InvalidVersionError, match="'version_type'.*'huge'"):
        Version().update("huge", b"x")


def test_equality_ignores_creation_time_and_ordering_uses_it():
    early = Version(creation_time=1.0)
    late = Version(creation_time=2.0)
    assert early == late and hash(early) == hash(late)
    assert early < late and late > early and early <= late and late >= early
    assert sorted([late, early], key=lambda v: v) == [early, late]
    changed = Version(creation_time=0.5).update_patch(b"x")
    assert changed != early
    assert changed < early  # ordering is by creation time, not by content


def test_versions_created_later_sort_later():
    first = Version()
    time.sleep(0.001)
    second = Version()
    assert first < second and max(second, first) is second


def test_comparing_with_a_non_version_is_a_type_error_not_an_attribute_error():
    version = Version()
    assert version != "version"
    with pytest.raises(TypeError):
        version < 3  # noqa: B015
    with pytest.raises(TypeError):
        version + 1  # noqa: B018


def test_addition_combines_each_subversion_as_sha1_of_both_digests():
    a = Version(creation_time=1.0).update_major(b"a")
    b = Version(creation_time=2.0).update_minor(b"b")
    total = a + b
    for name in ("major", "minor", "patch"):
        expected = hashlib.sha1((getattr(a, name) + getattr(b, name)).encode()).hexdigest()
        assert getattr(total, name) == expected
    assert total.creation_time == 2.0
    assert a + b != b + a


def test_update_extends_the_live_hash_and_returns_a_new_version():
    base = Version()
    updated = base.update(VersionType.MAJOR, b"abc")
    assert base.major == EMPTY  # the original is unchanged
    assert updated.major == hashlib.sha1(b"abc").hexdigest()
    assert updated.update_major(b"def").major == hashlib.sha1(b"abcdef").hexdigest()
    assert base.update("minor", b"x").minor == base.update_minor(b"x").minor
    assert base.update_patch(b"x").patch == hashlib.sha1(b"x").hexdigest()
    assert updated.subversion(VersionType.MAJOR) == updated.major


def test_a_sum_or_a_class_version_can_still_be_updated_as_in_chariots_0_2():
    total = Version() + Version()
    assert total.update_major(b"x").major == hashlib.sha1((EMPTY + EMPTY).encode() + b"x").hexdigest()

    class Op(BaseOp):
        factor = VersionedField(2, VersionType.MAJOR)

    retrained = Op.__version__.update_patch(b"training run 1")
    assert retrained.major == Op.__version__.major and retrained.patch != Op.__version__.patch
    assert Op.__version__.patch == Op().op_version.patch  # the class version is unchanged


def test_a_version_can_be_started_from_hash_objects():
    started = hashlib.sha1(b"seed")
    version = Version(major=started)
    started.update(b"later")  # the version keeps its own copy
    assert version.major == hashlib.sha1(b"seed").hexdigest()
    assert version.update_major(b"more").major == hashlib.sha1(b"seedmore").hexdigest()


def test_update_of_a_parsed_version_raises_a_chariots_error_that_says_what_to_do():
    parsed = Version.parse(str(Version().update_major(b"x")))
    with pytest.raises(ChariotsError, match="cannot update the major subversion.*`\\+`"):
        parsed.update_major(b"more")
    # the advised fix works
    fixed = parsed + Version().update_major(b"more")
    assert fixed.major != parsed.major
