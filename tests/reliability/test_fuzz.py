"""A seeded subset of benchmarks.faults' converter fuzzing: every mutated MIND or CSV input
either converts or stops with a SchemaError naming the file, leaving nothing behind."""
import pytest

from benchmarks import faults


@pytest.mark.parametrize("fmt", ["mind", "csv"])
def test_mutated_inputs_never_raise_a_traceback(fmt):
    result = faults.fuzz(fmt, 40, seed=7)
    assert result["failed"] == []
    # the mutations reach both outcomes: the fuzzing is not vacuous
    assert result["counts"].get("error", 0) >= 10 and result["counts"].get("converted", 0) >= 4


def test_each_mutation_kind_is_exercised_and_reproducible():
    import random
    files = faults.csv_sample(random.Random(0))
    seen = set()
    for kind in faults.MUTATIONS:
        a = faults.mutate(files, random.Random(3), kind)
        assert a == faults.mutate(files, random.Random(3), kind)
        seen.add(a[1].split()[0])
    assert seen == set(faults.MUTATIONS)
    data, _ = faults.mutate(files, random.Random(1), "non_utf8")
    with pytest.raises(UnicodeDecodeError):
        data["log.csv"].decode("utf-8")
