"""`gradcheck sweep --shard I/N` and `gradcheck report merge`: a fixed partition balanced by cost,
N shards merged equal the unsharded sweep record for record, and merges that must be refused."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gradcheck import cli
from gradcheck.executors import CellExecutor, SerialExecutor
from gradcheck.report.merge import MergeError, merge
from gradcheck.shards import cell_cost, parse_shard, partition, shard_of
from gradcheck.sweep import SweepConfig, run_sweep, sweep_cells

#: 2 activations x 2 losses x float64 dense cells and 2 layer kinds (4 layer cells): seconds
SMALL = ["--activations", "tanh,relu", "--losses", "mse,huber", "--dtype", "float64", "--examples", "1",
         "--layers", "dense,conv1d,layernorm", "--jobs", "1", "--quiet"]
CFG = SweepConfig(activations=("tanh", "relu"), losses=("mse", "huber"), dtypes=("float64",), examples=1,
                  layers=("dense", "conv1d", "layernorm"), out=None, quiet=True)


def untimed(record):
    """A record without its timing fields."""
    if isinstance(record, dict):
        return {k: untimed(v) for k, v in record.items() if k != "seconds"}
    if isinstance(record, list):
        return [untimed(v) for v in record]
    return record


def records(folder: Path) -> list[dict]:
    return [untimed(r) for r in json.loads((folder / "gradcheck.json").read_text())["results"]]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The unsharded sweep and its 3 shards, each written by the command line."""
    root = tmp_path_factory.mktemp("shards")
    assert cli.main(["sweep", *SMALL, "--out", str(root / "whole")]) == 0
    for i in (1, 2, 3):
        assert cli.main(["sweep", *SMALL, "--shard", f"{i}/3", "--out", str(root / f"s{i}")]) == 0
    return root


# -- the partition ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [("1/1", (1, 1)), ("2/4", (2, 4)), (" 3 / 3 ", (3, 3))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text, message", [("3/2", "--shard 3/2: I must be between 1 and N"),
                                           ("0/2", "--shard 0/2: I must be between 1 and N"),
                                           ("1/0", "N must be >= 1"), ("2", "expected I/N"),
                                           ("a/b", "expected I/N")])
def test_bad_shards_are_refused_with_a_clear_message(text, message, capsys):
    with pytest.raises(ValueError, match=message):
        parse_shard(text)
    assert cli.main(["sweep", "--shard", text, "--quiet", "--no-report"]) == 2
    assert message in capsys.readouterr().err


def test_the_partition_covers_every_cell_once_and_is_balanced():
    todo = sweep_cells(SweepConfig(out=None))  # the default sweep: 608 cells
    for n in (1, 2, 3, 4, 7):
        parts = [shard_of(todo, i, n) for i in range(1, n + 1)]
        assert sorted(i for p in parts for i in p) == list(range(len(todo)))
        loads = [sum(cell_cost(todo[i]) for i in p) for p in parts]
        # longest processing time first: no shard above the mean by more than the costliest cell
        assert max(loads) - sum(loads) / n <= max(cell_cost(c) for c in todo) + 1e-9
        assert all(p == sorted(p) for p in parts)  # each shard runs its cells in the sweep's order


def test_the_partition_is_deterministic_with_ties_to_the_earlier_cell():
    assert partition([1.0, 1.0, 1.0, 1.0], 2) == [1, 2, 1, 2]
    assert partition([3.0, 1.0, 1.0, 1.0], 2) == [1, 2, 2, 2]
    assert partition([], 3) == []
    todo = sweep_cells(CFG)
    assert shard_of(todo, 2, 3) == shard_of(sweep_cells(SweepConfig(**CFG.__dict__)), 2, 3)


def test_a_shard_runs_only_its_cells():
    cfg = SweepConfig(**{**CFG.__dict__, "shard": (2, 3)})
    outcome = run_sweep(cfg)
    assert outcome.cells == len(shard_of(sweep_cells(CFG), 2, 3)) and outcome.executor == "serial"


# -- merge --------------------------------------------------------------------------------------------
def test_shards_merged_equal_the_unsharded_sweep_record_for_record(reports, tmp_path, capsys):
    shard_files = [str(reports / f"s{i}" / "gradcheck.json") for i in (3, 1, 2)]  # any order
    assert cli.main(["report", "merge", *shard_files, "--out", str(tmp_path)]) == 0
    assert "(12 checks from 3 reports, 0 failed)" in capsys.readouterr().out
    whole = records(reports / "whole")
    assert len(whole) == 12
    assert records(tmp_path) == whole
    assert sum(len(records(reports / f"s{i}")) for i in (1, 2, 3)) == len(whole)
    meta = json.loads((tmp_path / "gradcheck.json").read_text())["meta"]
    assert "shard" not in meta and "--shard" not in meta["command"]
    assert len(meta["merged from"]) == 3
    assert (tmp_path / "index.html").exists() and (tmp_path / "junit.xml").exists()


def test_the_sweep_writes_what_merge_needs_into_meta(reports):
    meta = json.loads((reports / "s2" / "gradcheck.json").read_text())["meta"]
    assert meta["shard"] == "2/3" and meta["cells"] == 8 and meta["seed"] == 0
    assert meta["gradcheck version"] and meta["sweep config"]["activations"] == ["tanh", "relu"]
    assert meta["executor"] == "serial"


def _rewrite(src: Path, dst: Path, **meta) -> str:
    doc = json.loads(src.read_text())
    doc["meta"].update(meta)
    dst.write_text(json.dumps(doc))
    return str(dst)


def test_mixed_seeds_versions_and_configs_are_refused(reports, tmp_path, capsys):
    s1, s2 = reports / "s1" / "gradcheck.json", reports / "s2" / "gradcheck.json"
    other_seed = _rewrite(s2, tmp_path / "seed.json", seed=7)
    code = cli.main(["report", "merge", str(s1), other_seed, "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2 and "mixed seeds" in err and f"{s1} seed 0" in err and "seed.json seed 7" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m" / "gradcheck.json").exists()
    other_version = _rewrite(s2, tmp_path / "version.json", **{"gradcheck version": "0.0.1"})
    with pytest.raises(MergeError, match="mixed gradcheck versions: .* gradcheck version 0.0.1"):
        merge([s1, other_version])
    config = dict(json.loads(s2.read_text())["meta"]["sweep config"], examples=3)
    other_config = _rewrite(s2, tmp_path / "config.json", **{"sweep config": config})
    with pytest.raises(MergeError, match=r"mixed sweep configs: .*s1/gradcheck.json examples=1, .*config.json examples=3"):
        merge([s1, other_config])


def test_duplicates_and_missing_shards(reports, tmp_path, capsys):
    s = [str(reports / f"s{i}" / "gradcheck.json") for i in (1, 2, 3)]
    # the same records under another shard number: a record name in two files
    copy = _rewrite(Path(s[0]), tmp_path / "copy.json", shard="2/3")
    first = json.loads(Path(s[0]).read_text())["results"][0]["name"]
    with pytest.raises(MergeError, match=re.escape(f"duplicate record {first!r}: in ") + ".*s1/gradcheck.json and .*copy.json"):
        merge([s[0], copy, s[2]])
    with pytest.raises(MergeError, match="shard 1/3 given twice"):
        merge([s[0], _rewrite(Path(s[0]), tmp_path / "again.json"), s[1], s[2]])
    with pytest.raises(MergeError, match=r"missing shard\(s\) 2/3 of 3"):
        merge([s[0], s[2]])
    with pytest.raises(MergeError, match="is a whole sweep"):
        merge([s[0], str(reports / "whole" / "gradcheck.json")])
    # --allow-missing: merged, with a warning and the gap in the meta
    code = cli.main(["report", "merge", s[0], s[2], "--allow-missing", "--out", str(tmp_path / "part")])
    err = capsys.readouterr().err
    assert code == 0 and "warning: missing shard(s) 2/3 of 3" in err
    assert json.loads((tmp_path / "part" / "gradcheck.json").read_text())["meta"]["missing shards"] == "2/3"


def test_merge_refuses_what_is_not_a_sweep_report(tmp_path, capsys):
    import gradcheck.report

    gradcheck.report.write([], tmp_path / "plain", meta={"seed": 0})
    assert cli.main(["report", "merge", str(tmp_path / "plain" / "gradcheck.json"), "--out", str(tmp_path)]) == 2
    assert "not a report of gradcheck sweep" in capsys.readouterr().err
    assert cli.main(["report", "merge", "--out", str(tmp_path)]) == 2
    assert "give the gradcheck.json of every shard" in capsys.readouterr().err
    assert cli.main(["report", "merge", str(tmp_path / "none.json")]) == 2
    assert "--out DIR is required" in capsys.readouterr().err
    assert cli.main(["report", "merge", str(tmp_path / "none.json"), "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_the_plain_report_form_still_takes_one_file(reports, tmp_path, capsys):
    src = reports / "whole" / "gradcheck.json"
    assert cli.main(["report", str(src), "--out", str(tmp_path)]) == 0
    assert cli.main(["report", str(src), str(src)]) == 2
    assert "gradcheck report merge A.json B.json" in capsys.readouterr().err


# -- executors: each cell kept once, records in cell order ---------------------------------------------
class Shuffled(CellExecutor):
    """Delivers the cells in reverse order and every value twice (a retried cell arriving late)."""

    name = "shuffled"

    def run(self, fn, items):
        values = list(SerialExecutor().run(fn, items))
        for index, value in reversed(values):
            yield index, value
            yield index, ([], [])  # a second, different delivery of the same cell: ignored


def test_any_delivery_order_gives_the_same_records_each_cell_once():
    serial = run_sweep(CFG)
    shuffled = run_sweep(CFG, executor=Shuffled())
    assert [untimed(r.to_dict()) for r in shuffled.results] == [untimed(r.to_dict()) for r in serial.results]
    assert shuffled.executor == "shuffled"


def test_the_pool_gives_the_serial_records():
    serial = run_sweep(CFG)
    pooled = run_sweep(SweepConfig(**{**CFG.__dict__, "jobs": 2}))
    assert pooled.executor == "pool (jobs=2)"
    assert [untimed(r.to_dict()) for r in pooled.results] == [untimed(r.to_dict()) for r in serial.results]


def test_more_shards_than_cells_leave_empty_shards_that_pass_and_merge(tmp_path, capsys):
    one = ["--activations", "tanh", "--losses", "mse", "--dtype", "float64", "--examples", "1", "--layers", "dense",
           "--jobs", "1", "--quiet"]
    assert cli.main(["sweep", *one, "--shard", "2/2", "--out", str(tmp_path / "s2")]) == 0
    assert "shard 2/2: 0 of 1 cells" in capsys.readouterr().out
    assert cli.main(["sweep", *one, "--shard", "1/2", "--out", str(tmp_path / "s1")]) == 0
    assert cli.main(["sweep", *one, "--out", str(tmp_path / "whole")]) == 0
    files = [str(tmp_path / f"s{i}" / "gradcheck.json") for i in (1, 2)]
    assert cli.main(["report", "merge", *files, "--out", str(tmp_path / "merged")]) == 0
    assert records(tmp_path / "merged") == records(tmp_path / "whole") and len(records(tmp_path / "whole")) == 2
