import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data import convert, tfrecord_io
from data.schema import SchemaError, load_spec
from tests.conftest import REPO

NEWS = ("N1\tsports\tsoccer\tTitle one\tabs\turl\t"
        '[{"Label": "A", "WikidataId": "Q1"}, {"Label": "B", "WikidataId": "Q2"}]\t[]\n'
        "N2\tnews\tpolitics\tTitle two\tabs\turl\t[]\t[]\n")


def write_mind(directory, behaviors: str, news: str = NEWS):
    (directory / "behaviors.tsv").write_text(behaviors)
    (directory / "news.tsv").write_text(news)


def test_mind_rows_become_lists_of_ten_with_history_context(tmp_path):
    shown = " ".join(f"N{i}-{int(i == 2)}" for i in range(1, 13))  # 12 items -> lists of 10 + 2
    write_mind(tmp_path, f"1\tU1\t11/12/2019 9:00:00 AM\tN1 N2\t{shown}\n"
                         f"2\tU1\t11/13/2019 9:00:00 AM\tN1 N2\tN3-1 N4-0\n")
    log, spec, items, context_only, epoch = convert.convert_mind(str(tmp_path), 10)
    assert spec.channel_names == ("news", "sports", "unknown")
    real = ~context_only
    assert context_only.sum() == 2 and log.clicked[context_only].all()  # the click history
    assert (log.timestamp[context_only] < log.timestamp[real].min()).all()
    lists = np.unique(log.request_id[real])
    assert len(lists) == 3
    sizes = sorted(np.bincount(log.request_id[real])[lists])
    assert sizes == [2, 2, 10]
    names = {n: i for i, n in enumerate(sorted({f"N{i}" for i in range(1, 13)}))}
    n1, n2 = names["N1"], names["N2"]
    assert log.channel[log.item_id == n1][0] == spec.channel_names.index("sports")
    assert log.channel[log.item_id == names["N5"]][0] == spec.channel_names.index("unknown")
    assert (log.tags[log.item_id == n1][0] > 0).sum() == 3  # subcategory + two entities
    assert log.clicked[real & (log.item_id == n2)].tolist() == [1]
    assert log.context[0].tolist()[1] in range(7)
    assert spec.user_field_names == ("history_length_bucket",)


@pytest.mark.parametrize("line, message", [
    ("1\tU1\t11/12/2019 9:00:00 AM\tN1\n", "behaviors.tsv line 1: expected 5 tab-separated"),
    ("1\tU1\t2019-11-12\tN1\tN1-1\n", "behaviors.tsv line 1: time '2019-11-12' is not"),
    ("1\tU1\t11/12/2019 9:00:00 AM\tN1\tN1-7\n", "impression 'N1-7' is not 'NewsID-0|1'"),
])
def test_mind_errors_name_file_and_line(tmp_path, line, message):
    write_mind(tmp_path, line)
    with pytest.raises(SchemaError, match=message):
        convert.convert_mind(str(tmp_path), 10)


def test_mind_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"expected exactly one \*behaviors\*.tsv"):
        convert.convert_mind(str(tmp_path), 10)


def test_mind_sample_end_to_end(shared_data, tmp_path):
    """The real MIND rows: chronological split, shards that validate, categories as channels."""
    cmd = [sys.executable, "-m", "data.convert", "--format=mind",
           f"--input_dir={shared_data / 'mind-samples'}", f"--output_dir={tmp_path}",
           "--test_start=2019-11-13"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["splits"]["train"]["lists"] > 1000 and meta["splits"]["test"]["lists"] > 100
    assert meta["propensity_known"] is False and meta["splits"]["test"]["oracle_auc"] is None
    assert sorted(meta["sha256"]) == sorted(p.name for p in tmp_path.iterdir()
                                            if p.suffix in (".tfrecord", ".npz"))
    spec = load_spec(str(tmp_path / "metadata.json"))
    assert {"news", "sports", "unknown"} <= set(spec.channel_names)
    train = tfrecord_io.read_split(str(tmp_path), "train", spec)
    test = tfrecord_io.read_split(str(tmp_path), "test", spec)
    boundary = meta["chronological_split"]["test_start_timestamp"]
    assert train.timestamp.max() < boundary <= test.timestamp.min()
    assert 0.02 < train.clicked.mean() < 0.08  # MIND's positive rate is about 4%
    assert train.slot.max() == 9


OBD_COLUMNS = ("user_id=user_feature_0,item_id=item_id,timestamp=timestamp,clicked=click,"
               "propensity=propensity_score,slot=position,user_fields=user_feature_1|user_feature_2,"
               "context=user_feature_3")


def test_csv_adapter_on_open_bandit_rows(shared_data, tmp_path):
    """Real uniform-random logs; OBD has no user id, so a hashed user feature stands in."""
    path = shared_data / "open-bandit-dataset" / "random" / "men" / "men.csv"
    log, spec, items, _, epoch = convert.convert_csv(str(path), convert.parse_columns(OBD_COLUMNS), 10)
    assert len(log) == 10_000
    assert log.clicked.sum() == 46  # PROVENANCE: 46 clicks
    np.testing.assert_allclose(log.propensity, 1 / 34, rtol=1e-6)
    assert spec.n_items == 34 and spec.channel_names == ("all",)
    assert set(np.unique(log.slot)) == {1, 2, 3}
    meta = convert.write_dataset(log, spec, items, None, str(tmp_path),
                                 convert._epoch("2019-11-29") - epoch, 50, 2, "csv", {})
    assert meta["splits"]["train"]["impressions"] + meta["splits"]["test"]["impressions"] == 10_000


def test_csv_mapping_and_value_errors(tmp_path):
    with pytest.raises(ValueError, match=r"--columns must map \['clicked'\]"):
        convert.parse_columns("user_id=u,item_id=i,timestamp=t")
    with pytest.raises(ValueError, match="unknown schema name 'colour'"):
        convert.parse_columns("colour=c")
    f = tmp_path / "log.csv"
    f.write_text("u,i,t,c\nA,x,100,1\nB,y,200,yes\n")
    mapping = convert.parse_columns("user_id=u,item_id=i,timestamp=t,clicked=c")
    with pytest.raises(SchemaError, match="log.csv line 3: clicked 'yes' is not a finite number"):
        convert.convert_csv(str(f), mapping, 10)
    f.write_text("u,i,t,c\nA,x,100,1\nB,y,soon,0\n")
    with pytest.raises(SchemaError, match="log.csv line 3: timestamp 'soon' is neither"):
        convert.convert_csv(str(f), mapping, 10)
    f.write_text("u,i,t\nA,x,100\n")
    with pytest.raises(SchemaError, match=r"columns \['c'\] not in header"):
        convert.convert_csv(str(f), mapping, 10)


def test_broken_rows_are_named_by_file_and_line(tmp_path):
    mapping = convert.parse_columns("user_id=u,item_id=i,timestamp=t,clicked=c")
    f = tmp_path / "log.csv"
    f.write_bytes(b"u,i,t,c\nA,x,100,1\nB,y,2\xff00,0\n")
    with pytest.raises(SchemaError, match=r"log.csv line 3: not UTF-8 \(invalid start byte at "
                                          r"byte 5 of the line\)"):
        convert.convert_csv(str(f), mapping, 10)
    f.write_text("u,i,t,c\nA,x,100,1\nB,y,200\n")
    with pytest.raises(SchemaError, match=r"log.csv line 3: expected 4 columns \(the header's\), "
                                          r"got 3"):
        convert.convert_csv(str(f), mapping, 10)
    f.write_text("u,i,t,c\nA,x,100,1,extra\n")
    with pytest.raises(SchemaError, match="log.csv line 2: expected 4 columns .* got 5"):
        convert.convert_csv(str(f), mapping, 10)
    f.write_text("u,i,t,c\nA,x,inf,1\n")
    with pytest.raises(SchemaError, match="log.csv line 2: timestamp 'inf' is not a time"):
        convert.convert_csv(str(f), mapping, 10)
    write_mind(tmp_path, "1\tU1\t11/12/2019 9:00:00 AM\tN1\tN1-1\n")
    (tmp_path / "news.tsv").write_bytes(NEWS.encode() + b"N3\tsp\xc3\tx\n")
    with pytest.raises(SchemaError, match=r"news.tsv line 3: not UTF-8"):
        convert.convert_mind(str(tmp_path), 10)


def test_a_failed_conversion_leaves_nothing_and_a_good_one_replaces_the_old(tmp_path):
    out = tmp_path / "out"
    f = tmp_path / "log.csv"
    cols = "user_id=u,item_id=i,timestamp=t,clicked=c"
    day = 86400
    f.write_text("u,i,t,c\n" + "".join(f"U{k % 3},x{k},{k * day // 4},{k % 2}\n"
                                       for k in range(16)))
    # every row before the test start: the test split is empty, found after the shards
    with pytest.raises(SchemaError, match=r"log.csv \(rows from 1970-01-01 to 1970-01-04\): "
                                          r"the test split is empty"):
        convert.convert("csv", str(f), str(out), 10 * day, n_shards=1, columns=cols)
    assert os.listdir(out) == []
    first = convert.convert("csv", str(f), str(out), 2 * day, n_shards=2, columns=cols)
    second = convert.convert("csv", str(f), str(out), 3 * day, n_shards=1, columns=cols)
    assert first["fingerprint"] != second["fingerprint"]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["fingerprint"] == second["fingerprint"]
    assert sorted(os.listdir(out)) == sorted([*meta["sha256"], "metadata.json"])  # no 2-shard
    # files and no staging folder left
    # a bad input on the CLI: the message, no traceback, the old dataset untouched
    f.write_text("u,i,t,c\nA,x,100\n")
    done = subprocess.run([sys.executable, "-m", "data.convert", "--format=csv",
                           f"--input_dir={f}", f"--output_dir={out}", "--test_start=1970-01-02",
                           f"--columns={cols}"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "data.convert: log.csv line 2: expected 4 columns" in done.stderr
    assert json.loads((out / "metadata.json").read_text())["fingerprint"] == second["fingerprint"]


def test_csv_long_requests_are_cut_and_slots_derived(tmp_path):
    rows = ["u,i,t,c,ch"] + [f"A,item{k},{1000 + (k >= 12)},{k % 2},{'v' if k % 3 else 'n'}"
                             for k in range(14)]
    f = tmp_path / "log.csv"
    f.write_text("\n".join(rows) + "\n")
    mapping = convert.parse_columns("user_id=u,item_id=i,timestamp=t,clicked=c,channel=ch")
    log, spec, *_ = convert.convert_csv(str(f), mapping, 10)
    assert spec.channel_names == ("n", "v")
    sizes = sorted(np.bincount(log.request_id)[np.unique(log.request_id)])
    assert sizes == [2, 2, 10]  # 12 rows at t=1000 -> 10 + 2; 2 rows at t=1001
    assert log.slot.max() == 9


def test_novelty_counts_tags_new_to_the_user():
    from tests.data.helpers import make_log
    log = make_log([1, 1, 1, 2], [1, 1, 2, 3], [0, 1, 0, 0], [5, 5 + 19, 5, 5], clicked=[1, 0, 0, 0])
    convert.add_novelty(log)  # items 5 and 24 share tag 6; user 1 clicked item 5 first
    assert log.novel_tags.tolist() == [1, 0, 0, 1]
