"""Every CLI command end to end, as a subprocess, on a temporary SQLite storage."""

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import NNSEARCH, cli_env, run_cli, run_small_study, write_study

COMMANDS = ["create", "run", "worker", "status", "export", "train", "predict", "trials", "enqueue"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A small iris study run to its budget of 6 trials by 2 workers."""
    tmp = tmp_path_factory.mktemp("finished")
    study, res = run_small_study(tmp, trials=6)
    return tmp, study, res


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_has_examples(tmp_path, command):
    res = run_cli(*([command] if command else []), "--help", cwd=tmp_path)
    assert res.returncode == 0
    assert "examples:" in res.stdout and "nnsearch" in res.stdout


def test_run_ends_with_best_trial_and_export(finished):
    tmp, _study, res = finished
    assert res.stdout.count("best trial") == 1, res.stdout  # the closing line, once
    assert res.stdout.rstrip().splitlines()[-3].startswith("best trial")
    exported = tmp / "small-best.json"
    assert f"exported config: {exported}" in res.stdout
    config = json.loads(exported.read_text())
    assert config["format"] == "nnsearch.trial/1"
    assert {"study", "trial", "data", "network", "training", "seed", "versions"} <= set(config)
    assert config["network"]["layer_sizes"][0] == 4 and config["network"]["layer_sizes"][-1] == 3
    assert config["seed"] == config["training"]["seed"] == config["trial"]["user_attrs"]["seed"]


def test_create_is_idempotent(finished):
    tmp, study, _ = finished

    def stored() -> dict:  # the status, less the fleet's pace (trials/min: the clock's)
        data = json.loads(run_cli("status", str(study), "--json", cwd=tmp).stdout)
        for key in ("trials_per_minute", "over_minutes"):
            data["fleet"].pop(key)
        return data

    before = stored()
    res = run_cli("create", str(study), cwd=tmp)
    assert res.returncode == 0 and "exists" in res.stdout
    assert stored() == before


def test_status_by_file_and_by_name(finished):
    tmp, study, _ = finished
    res = run_cli("status", str(study), cwd=tmp)
    assert res.returncode == 0 and "complete" in res.stdout and "best trial" in res.stdout
    by_name = run_cli("status", "--study", "small", "--storage",
                      f"sqlite:///{tmp / 'small.db'}", "--json", cwd=tmp)
    assert by_name.returncode == 0, by_name.stderr
    counts = json.loads(by_name.stdout)
    assert counts["complete"] + counts["pruned"] == 6
    assert counts["running"] == 0
    assert counts["best"]["value"] > 0.5


def test_export_to_stdout_and_file_and_by_number(finished):
    tmp, study, _ = finished
    out = tmp / "e.json"
    res = run_cli("export", str(study), "-o", str(out), cwd=tmp)
    assert res.returncode == 0 and res.stdout == ""
    best = json.loads(out.read_text())
    res = run_cli("export", str(study), cwd=tmp)
    assert json.loads(res.stdout)["trial"] == best["trial"]
    status = json.loads(run_cli("status", str(study), "--json", cwd=tmp).stdout)
    assert best["trial"]["number"] == status["best"]["number"]
    other = run_cli("export", str(study), "--trial", str(best["trial"]["number"]), cwd=tmp)
    assert json.loads(other.stdout)["trial"]["number"] == best["trial"]["number"]


def test_export_is_self_contained(finished, tmp_path):
    """Train works from the export alone, with the study's storage gone."""
    tmp, _study, _ = finished
    config = tmp_path / "best.json"
    shutil.copy(tmp / "small-best.json", config)
    res = run_cli("train", str(config), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("val_accuracy=") and " test_accuracy=" in res.stdout
    assert "reproduced trial" in res.stderr
    assert (tmp_path / "best.npz").is_file() and (tmp_path / "best.png").stat().st_size > 1000
    value = json.loads(config.read_text())["trial"]["value"]
    js = run_cli("train", str(config), "-o", str(tmp_path / "m.npz"), "--json", cwd=tmp_path)
    metrics = json.loads(js.stdout)
    assert metrics["val_accuracy"] == value  # bit-identical retraining
    assert (tmp_path / "m.npz").is_file() and (tmp_path / "m.png").is_file()


def test_csv_study_train_and_predict(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["x1,x2,x3,label"]
    for i in range(90):
        c = ["red", "green", "blue"][i % 3]
        lines.append(f"{rng.normal() + 4 * (i % 3):.4f},{rng.normal():.4f},{rng.normal():.4f},{c}")
    (tmp_path / "points.csv").write_text("\n".join(lines) + "\n")
    # numbers through their quantiles (data.numeric): fitted at run, applied by predict
    study = write_study(tmp_path / "csv.toml", name="csv", source="points.csv",
                        data_extra='target = "label"\nnumeric = "quantile"', trials=3)
    assert run_cli("run", str(study), cwd=tmp_path).returncode == 0
    res = run_cli("train", "csv-best.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    prep = json.loads((tmp_path / "csv-best.json").read_text())["preprocessing"]
    assert all(len(c["quantiles"]) == 54 for c in prep["columns"])  # 60% of 90 rows
    pred = run_cli("predict", "csv-best.npz", "points.csv", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    rows = pred.stdout.splitlines()
    assert rows[0] == "prediction" and len(rows) == 91
    assert set(rows[1:]) <= {"red", "green", "blue"}
    truth = [line.split(",")[-1] for line in lines[1:]]
    assert np.mean([a == b for a, b in zip(rows[1:], truth, strict=True)]) > 0.7
    # Columns are found by name: another order and an unused text column change nothing.
    shuffled = ["id,x3,label,x1,x2"] + [
        f"row{i},{x3},{label},{x1},{x2}" for i, (x1, x2, x3, label) in
        enumerate(line.split(",") for line in lines[1:])]
    (tmp_path / "shuffled.csv").write_text("\n".join(shuffled) + "\n")
    again = run_cli("predict", "csv-best.npz", "shuffled.csv", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == pred.stdout and "ignoring column(s) the model does not use: id" \
        in again.stderr


def test_npz_study(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 3))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] + X[:, 1] > 0).astype(int))
    study = write_study(tmp_path / "n.toml", name="n", source="d.npz", trials=2)
    res = run_cli("run", str(study), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    pred = run_cli("predict", "n-best.npz", "d.npz", cwd=tmp_path)
    assert run_cli("train", "n-best.json", cwd=tmp_path).returncode == 0
    pred = run_cli("predict", "n-best.npz", "d.npz", cwd=tmp_path)
    assert pred.returncode == 0 and len(pred.stdout.splitlines()) == 81


def test_regression_study_reports_rmse(tmp_path):
    study = write_study(tmp_path / "r.toml", name="r", source="diabetes", trials=2,
                        metric="val_rmse")
    res = run_cli("run", str(study), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "val_rmse=" in res.stdout
    train = run_cli("train", "r-best.json", cwd=tmp_path)
    assert train.stdout.startswith("val_rmse=") and "test_rmse=" in train.stdout
    val = float(train.stdout.split()[0].split("=")[1])
    assert 30 < val < 120  # diabetes targets span 25..346: RMSE in the target's own units


# ----- bad inputs: one line, exit 2, storage untouched -----------------------------------
def _bad_cases(tmp: Path, study: Path):
    good = study.read_text()
    db = f"sqlite:///{tmp / 'small.db'}"

    def variant(name, text):
        path = tmp / name
        path.write_text(text)
        return str(path)

    def with_data(name, extra):
        """The good study with ``extra`` lines added to its [data] section."""
        return variant(name, good.replace('source = "iris"', f'source = "iris"\n{extra}'))

    def csv_study(name, csv_text, target="label"):
        (tmp / f"{name}.csv").write_text(csv_text)
        return variant(f"{name}.toml", good.replace('source = "iris"',
                                                    f'source = "{name}.csv"\ntarget = "{target}"'))

    exported = json.loads((tmp / "small-best.json").read_text())

    def export_variant(name, change):
        config = json.loads(json.dumps(exported))
        change(config)
        return variant(f"{name}.json", json.dumps(config))

    base_rows = "a,b,label\n" + "".join(f"{i % 5}.5,{i % 7},{'xy'[i % 2]}\n" for i in range(30))
    (tmp / "base.csv").write_text(base_rows)
    (tmp / "garbage.npz").write_bytes(b"this is not a model")
    secret = tmp / "not-a-table"
    secret.write_text("root:$6$hunter2:19000:0:99999:7:::\n")
    if not (tmp / "linked.csv").is_symlink():
        (tmp / "linked.csv").symlink_to(secret)
    return {
        "missing file": (["run", str(tmp / "nope.toml")], "study file not found"),
        "TOML syntax": (["run", variant("syntax.toml", good + "\n[space\n")],
                        "TOML syntax error"),
        "unknown key": (["run", variant("key.toml", good.replace("[budget]",
                                                                 "[budget]\ntrails = 3"))],
                        "unknown key budget.'trails'"),
        "reversed range": (["run", variant("rev.toml", good.replace(
            "low = 1e-3, high = 1e-2", "low = 1e-2, high = 1e-3"))], "reversed"),
        "unknown choice": (["run", variant("choice.toml", good.replace('"tanh"', '"swish"'))],
                           "invalid choice 'swish'"),
        "empty CSV": (["run", csv_study("empty", "")], "empty"),
        "missing target column": (["run", csv_study("notarget", base_rows, target="kind")],
                                  "target column 'kind' is not in the header"),
        "numeric column with a typo": (["run", csv_study("text", base_rows.replace("0.5", "zero",
                                                                                    1))],
                                       "column 'a' is numeric except 1 cell(s)"),
        "single class": (["run", csv_study("oneclass", base_rows.replace(",y\n", ",x\n"))],
                         "single class"),
        "infinite value": (["run", csv_study("nan", base_rows + "inf,1,x\n")],
                           "column 'a' holds infinite values"),
        "identifier column": (["run", csv_study("ident", "name," + "".join(
            f"person{i}," * (i > 0) + line + "\n"
            for i, line in enumerate(base_rows.splitlines())))], "looks like an identifier"),
        "a column with every value missing": (["run", csv_study(
            "emptycol", "c," + base_rows.rstrip("\n").replace("\n", "\n,") + "\n")],
            "column 'c' is empty"),
        "drop names no column": (["run", variant("drop.toml", good.replace(
            'source = "iris"', 'source = "nan.csv"\ntarget = "label"\ndrop = ["nope"]'))],
            "data.drop names column(s) ['nope']"),
        "symlink to a file that is not a table": (["run", variant("link.toml", good.replace(
            'source = "iris"', 'source = "linked.csv"\ntarget = "label"'))],
            "not in the header"),
        "study name with a slash": (["run", variant("slash.toml", good.replace(
            'name = "small"', 'name = "a/b"'))], "study.name must be letters, digits"),
        "a key written twice": (["run", variant("twice.toml", good.replace(
            "seed = 3", "seed = 3\nseed = 4"))], "'seed = 4'"),
        "negative split seed": (["run", with_data("dseed.toml", "seed = -1")],
                                "data.seed must be a seed"),
        "sampler argument of the wrong type": (["run", variant("sarg.toml", good.replace(
            'name = "tpe"', 'name = "tpe"\nn_startup_trials = "ten"'))],
            "sampler.n_startup_trials must be int"),
        "gp without PyTorch": (["run", variant("gp.toml", good.replace('name = "tpe"',
                                                                       'name = "gp"'))],
                               "sampler gp needs PyTorch"),
        "unknown study name": (["status", "--study", "nosuch", "--storage", db],
                               "no study named 'nosuch'"),
        "trial does not exist": (["export", str(study), "--trial", "999"],
                                 "has no trial 999"),
        "no completed trial": (["export", "--study", "empty", "--storage", db],
                               "no completed trial"),
        "corrupt model": (["predict", str(tmp / "garbage.npz"), str(tmp / "nan.csv")],
                          "garbage.npz: not an nnsearch model file (not an .npz archive)."),
        "a table for a model": (["predict", str(tmp / "base.csv"), str(tmp / "base.csv")],
                                "base.csv: not an nnsearch model file (not an .npz archive)."),
        "predict from standard input": (["predict", str(tmp / "garbage.npz"), "-"],
                                        "data file - is not a regular file"),
        "a folder for a study file": (["run", str(tmp)], "is a folder; give a file."),
        "negative trials": (["run", str(study), "--trials", "-3"], "must be >= 1"),
        "a port past 65535": (["proxy", "--storage", f"sqlite:///{tmp / 'small.db'}", "--port",
                               "70000"], "--port: must be >= 1 and <= 65535, but got 70000"),
        "a dashboard port past 65535": (["dashboard", str(study), "--port", "99999"],
                                        "--port: must be >= 0 and <= 65535, but got 99999"),
        "an endless timeout": (["run", str(study), "--timeout", "inf"],
                               "--timeout: must be a finite number > 0, but got inf"),
        "not an export": (["train", str(study)], "not valid JSON"),
        "no seeds": (["train", str(study), "--seeds", "0"], "--seeds must be in [1, 20]"),
        "missing storage file": (["status", "--study", "small", "--storage",
                                  f"sqlite:///{tmp / 'absent.db'}"], "no storage at"),
        "metric for wrong task": (["run", variant("task.toml", good.replace(
            'source = "iris"', 'source = "diabetes"'))], "does not apply"),
        "unknown dataset": (["run", variant("ds.toml", good.replace('"iris"', '"mnist"'))],
                            "unknown dataset 'mnist'"),
        "image shape vs features": (["run", with_data("img.toml",
                                                      "image_shape = [3, 3]\nshift = 1")],
            "holds 9 pixels, but the data has 4 features"),
        "duplicated header": (["run", csv_study("dup", base_rows.replace("a,b,", "a,a,", 1))],
                              "names column(s) ['a'] more than once"),
        "a first row longer than the header": (
            ["run", csv_study("long", base_rows.replace("0.5,0,x\n", "0.5,0,x,extra\n", 1))],
            "long.csv: line 2 has 4 fields, the header has 3."),
        "empty target cell": (["run", csv_study("notlabel", base_rows + "1.5,2,\n")],
                              "1 row(s) have an empty or missing target 'label' "
                              "(first at line 32;"),
        "export: outputs vs classes": (["train", export_variant(
            "outputs", lambda c: c["network"]["layer_sizes"].__setitem__(-1, 7))],
            "to 7 outputs, but the data has 4 features and 3 output(s)"),
        "export: no layer_sizes": (["train", export_variant(
            "nolayers", lambda c: c["network"].pop("layer_sizes"))], "bad network"),
        "export: unknown key": (["train", export_variant(
            "unknown", lambda c: c["training"].__setitem__("warmup", 3))], "'warmup'"),
        "export: huge layer": (["train", export_variant(
            "huge", lambda c: c["network"]["layer_sizes"].insert(1, 300_000_000))],
            "layer_sizes must be an integer in [1, 65536]"),
        "export: nested too deeply": (["train", variant("deep.json", "[" * 100_000)],
                                      "nested too deeply"),
        "edited split seed": (["run", "--storage", db, with_data("seed.toml", "seed = 1")],
            "was created from another definition (data.seed: 0 -> 1)"),
        "categorical names no column": (["run", variant("cat.toml", good.replace(
            'source = "iris"', 'source = "base.csv"\ntarget = "label"\ncategorical = ["zip"]'))],
            "data.categorical names column(s) ['zip']"),
        "negative recheck": (["run", variant("recheck.toml", good + "\n[selection]\n"
                                             "recheck = -1\n")], "selection.recheck must be"),
        "recheck with no seed": (["run", variant("seeds.toml", good + "\n[selection]\n"
                                                 "recheck = 2\nseeds = 0\n")],
                                 "selection.seeds must be in [1, 20]"),
        "export over the study file": (["export", str(study), "-o", str(study)],
                                       "exists and is not an nnsearch export"),
        "train into a missing folder": (["train", str(tmp / "small-best.json"), "-o",
                                         str(tmp / "nodir" / "m.npz")], "no such folder"),
        "init into a missing folder": (["init", str(tmp / "base.csv"), "--target", "label",
                                        "-o", str(tmp / "nodir" / "x.toml")], "no such folder"),
        "a numeric target with a typo": (["run", csv_study("ytypo", "a,b,y\n" + "".join(
            f"{i % 5}.5,{i % 7},{'oops' if i == 9 else i * 1.5}\n" for i in range(40)),
            target="y")], "the target 'y' is numeric except 1 cell(s) (e.g. 'oops' at line 11)"),
        "init: nothing to start from": (["init"], "give a DATA.csv file or --example NAME"),
        "init: no target": (["init", str(tmp / "base.csv")], "--target COL is required"),
        "init: target not in the table": (["init", str(tmp / "base.csv"), "--target", "kind"],
                                          "target column 'kind' is not in the header"),
        "init: would overwrite": (["init", "--example", "digits", "-o", str(study)],
                                  "exists; choose another -o FILE"),
        "init: unknown example": (["init", "--example", "mnist"], "invalid choice: 'mnist'"),
        "one fold": (["run", with_data("fold1.toml", "folds = 1")],
                     "data.folds must be in [2, 20]"),
        "folds with a validation share": (["run", with_data("foldval.toml",
                                                            "folds = 3\nvalidation = 0.3")],
                                          "data.validation does not apply with data.folds"),
        "more folds than a class has": (["run", variant("fold9.toml", good.replace(
            'source = "iris"', 'source = "base.csv"\ntarget = "label"\nfolds = 20'))],
            "data.folds = 20 needs at least 20 samples of each class"),
        "wilcoxon without folds": (["run", variant("wil.toml", good.replace(
            'name = "median"', 'name = "wilcoxon"').replace("n_startup_trials = 2", ""))],
            "pruner wilcoxon compares trials fold by fold and needs data.folds"),
        "wilcoxon that can never prune": (["run", variant("wil3.toml", good.replace(
            'name = "median"', 'name = "wilcoxon"').replace("n_startup_trials = 2", "")
            .replace('source = "iris"', 'source = "iris"\nfolds = 3'))],
            "pruner wilcoxon can never prune with data.folds = 3"),
        "negative grace": (["run", variant("grace.toml", good.replace(
            "[budget]", "[budget]\ngrace = -1"))], "budget.grace must be a number of seconds"),
        "enqueue outside the space": (["run", variant("enq.toml", good + (
            "\n[[enqueue]]\nn_layers = 9\n"))], "[[enqueue]] 1: n_layers: 9 is outside the "
            "space's range [1, 2]"),
        "enqueue as one table": (["run", variant("enq1.toml", good + (
            "\n[enqueue]\nn_layers = 1\n"))], "enqueue must be a list of tables ([[enqueue]])"),
        "edited range, worker": (["worker", "--storage", db, variant("range.toml", good.replace(
            "high = 0.2", "high = 0.3"))], '"high": 0.2} -> {"low": 0.0, "high": 0.3}'),
        **_trade_off_cases(good, variant, db),
        **_table_and_stop_cases(tmp, study, good, variant),
    }


def _table_and_stop_cases(tmp: Path, study: Path, good: str, variant):
    """[budget] target and stall, nnsearch trials, export --format, nnsearch enqueue."""
    (tmp / "nine_layers.json").write_text('{"n_layers": 9}')
    (tmp / "notjson.json").write_text("n_layers = 2")
    return {
        "report into a file": (["report", str(study), "--out", str(study)],
                               "cannot make that folder"),
        "a stall of zero": (["run", variant("st0.toml", good.replace(
            "[budget]", "[budget]\nstall = 0"))], "budget.stall must be a number of finished"),
        "a target in words": (["run", variant("tw.toml", good.replace(
            "[budget]", '[budget]\ntarget = "high"'))], "budget.target must be int or float"),
        "a target the metric never takes": (["run", variant("tr.toml", good.replace(
            "[budget]", "[budget]\ntarget = 2.0"))],
            "budget.target must be a value val_accuracy can take ([0, 1]), but got 2.0"),
        "a space of networks too big to hold": (["run", variant("big.toml", good.replace(
            "n_layers = { low = 1, high = 2 }", "n_layers = 4").replace(
            "width = { low = 8, high = 32 }", "width = 65536"))],
            "the smallest network the space builds has 12,885,622,787 parameters on 4 "
            "inputs and 3 outputs, over the most a network holds (268,435,456)"),
        "an endless timeout in the file": (["run", variant("ti.toml", good.replace(
            "[budget]", "[budget]\ntimeout = inf"))],
            "budget.timeout must be a finite number of seconds > 0, but got inf"),
        "trials in an unknown state": (["trials", str(study), "--state", "done"],
                                       "unknown state 'done'"),
        "trials sorted by an unknown key": (["trials", str(study), "--sort", "speed"],
                                            "invalid choice: 'speed'"),
        "export in an unknown format": (["export", str(study), "--format", "xml"],
                                        "invalid choice: 'xml'"),
        "enqueue outside the space, CLI": (["enqueue", str(study), str(tmp / "nine_layers.json")],
                                           "n_layers: 9 is outside the space's range [1, 2]"),
        "enqueue a file that is not JSON": (["enqueue", str(study), str(tmp / "notjson.json")],
                                            "not valid JSON"),
    }


def _trade_off_cases(good: str, variant, db: str):
    """Multi-objective studies, [constraints] and run --from-study."""
    unpruned = re.sub(r"\[pruner\]\n[^\[]*", "", good)

    def multi(name, metric, budget="", sampler="tpe"):
        return variant(name, unpruned.replace('metric = "val_accuracy"', f"metric = {metric}")
                       .replace("[budget]", f"[budget]{budget}")
                       .replace('name = "tpe"', f'name = "{sampler}"'))

    return {
        "a cost first": (["run", multi("m1.toml", '["n_params", "val_accuracy"]')],
                         "study.metric: n_params is a cost to trade against a quality metric"),
        "a quality metric after the first": (
            ["run", multi("m2.toml", '["val_accuracy", "val_loss"]')],
            "after the first metric come costs (n_params, latency_ms), but got 'val_loss'"),
        "a metric named twice": (["run", multi("m3.toml", '["val_accuracy", "n_params", '
                                                          '"n_params"]')],
                                 "study.metric names a metric twice"),
        "multi-objective with cmaes": (
            ["run", multi("m4.toml", '["val_accuracy", "n_params"]', sampler="cmaes")],
            "sampler.name: cmaes searches one objective"),
        "multi-objective with a pruner": (
            ["run", variant("m5.toml", good.replace('metric = "val_accuracy"',
                                                    'metric = ["val_accuracy", "n_params"]'))],
            "[pruner]: Optuna cannot prune a multi-objective study"),
        "multi-objective with a target": (
            ["run", multi("m6.toml", '["val_accuracy", "latency_ms"]', budget="\ntarget = 0.9")],
            "budget.target applies to a single-objective study"),
        "a direction against the metrics": (
            ["run", multi("m7.toml", '["val_accuracy", "n_params"]\n'
                                     'direction = ["maximize", "maximize"]')],
            "study.direction: val_accuracy is to maximize and n_params is to minimize"),
        "max_params below 1": (["run", variant("c1.toml", good + "\n[constraints]\n"
                                               "max_params = 0\n")],
                               "constraints.max_params must be a parameter count in [1, "),
        "a negative latency bound": (["run", variant("c2.toml", good + "\n[constraints]\n"
                                                     "max_latency_ms = -1\n")],
                                     "constraints.max_latency_ms must be a time in ms > 0"),
        "a max_params no network meets": (["run", variant("c4.toml", good + "\n[constraints]\n"
                                                          "max_params = 50\n")],
                                         "constraints.max_params = 50 is below the smallest "
                                         "network the space builds (67 parameters"),
        "an enqueued network over max_params": (
            ["run", variant("c5.toml", good + "\n[constraints]\nmax_params = 500\n\n"
                            "[[enqueue]]\nn_layers = 2\nwidth = 32\n")],
            "enqueued trial 1 builds 1,315 parameters, over constraints.max_params = 500"),
        "an unknown constraint": (["run", variant("c3.toml", good + "\n[constraints]\n"
                                                  "max_flops = 3\n")],
                                  "unknown key constraints.'max_flops'"),
        "from a study that is not there": (["run", variant("f1.toml", good), "--storage", db,
                                            "--from-study", "nosuch"],
                                           "--from-study: no study 'nosuch' in"),
        "from an empty name": (["run", variant("f4.toml", good), "--storage", db,
                                "--from-study", ""],
                               "--from-study needs the name of a study in the same storage"),
        "from itself": (["run", variant("f2.toml", good), "--storage", db, "--from-study",
                         "small"], "--from-study small: that is this study"),
        "from a study validated otherwise": (
            ["run", variant("f5.toml", good.replace('name = "small"', 'name = "f5"').replace(
                'source = "iris"', 'source = "iris"\nfolds = 3')), "--storage", db,
             "--from-study", "small"],
            "--from-study small: it validated on one validation split, this study on 3 "
            "folds"),
        "from a study with no finished trial": (
            ["run", variant("f3.toml", good), "--storage", db, "--from-study", "empty"],
            "--from-study empty: none of its 0 finished trial(s) fits this study's space"),
    }


@pytest.fixture(scope="module")
def with_empty_study(finished):
    tmp, study, _ = finished
    empty = write_study(tmp / "empty.toml", name="empty")
    res = run_cli("create", str(empty), "--storage", f"sqlite:///{tmp / 'small.db'}", cwd=tmp)
    assert res.returncode == 0, res.stderr
    return tmp, study


CASES = ["missing file", "TOML syntax", "unknown key", "reversed range", "unknown choice",
         "empty CSV", "missing target column", "numeric column with a typo", "single class",
         "infinite value", "identifier column", "a column with every value missing",
         "drop names no column", "categorical names no column",
         "symlink to a file that is not a table", "study name with a slash",
         "a key written twice", "negative split seed", "sampler argument of the wrong type",
         *(["gp without PyTorch"] if importlib.util.find_spec("torch") is None else []),
         "unknown study name", "trial does not exist", "no completed trial",
         "corrupt model", "a table for a model", "predict from standard input",
         "a folder for a study file", "negative trials", "an endless timeout",
         "a port past 65535", "a dashboard port past 65535", "not an export",
         "missing storage file", "metric for wrong task", "unknown dataset",
         "image shape vs features", "duplicated header",
         "a first row longer than the header", "empty target cell",
         "export: outputs vs classes", "export: no layer_sizes", "export: unknown key",
         "export: huge layer", "export: nested too deeply", "edited split seed", "negative grace",
         "enqueue outside the space", "enqueue as one table",
         "edited range, worker", "negative recheck", "recheck with no seed",
         "export over the study file", "train into a missing folder",
         "init into a missing folder", "a numeric target with a typo",
         "init: nothing to start from", "init: no target",
         "init: target not in the table", "init: would overwrite", "init: unknown example",
         "one fold", "folds with a validation share", "more folds than a class has",
         "wilcoxon without folds", "wilcoxon that can never prune",
         "a cost first", "a quality metric after the first", "a metric named twice",
         "multi-objective with cmaes", "multi-objective with a pruner",
         "multi-objective with a target", "a direction against the metrics",
         "max_params below 1", "a negative latency bound", "an unknown constraint",
         "a max_params no network meets", "an enqueued network over max_params",
         "report into a file", "from an empty name",
         "from a study that is not there", "from itself", "from a study validated otherwise",
         "from a study with no finished trial",
         "a stall of zero", "a target in words", "a target the metric never takes",
         "an endless timeout in the file", "a space of networks too big to hold",
         "trials in an unknown state",
         "trials sorted by an unknown key", "export in an unknown format",
         "enqueue outside the space, CLI", "enqueue a file that is not JSON"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_line_and_exit_2(with_empty_study, case):
    tmp, study = with_empty_study
    args, expected = _bad_cases(tmp, study)[case]
    db = tmp / "small.db"
    before = _digest(db)
    res = run_cli(*args, cwd=tmp)
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert expected in lines[0]
    assert "Traceback" not in res.stderr
    assert _digest(db) == before, "the storage changed"
    assert not (tmp / "absent.db").exists()
    assert "hunter2" not in res.stderr
    assert sorted(p.name for p in tmp.glob("*.db")) == ["small.db"]  # no new storage
    assert not (tmp / "base.toml").exists() and not list(tmp.glob(".*.tmp*"))  # init wrote none
    assert study.read_text().startswith("\n[study]")  # the study file is still one


def test_diverged_trials_are_pruned_with_a_reason(tmp_path):
    study = write_study(tmp_path / "div.toml", name="div", trials=2, epochs=30)
    text = study.read_text().replace(
        'learning_rate = { low = 1e-3, high = 1e-2, log = true }',
        'learning_rate = 1e6\noptimizer = "sgd"\ninit = "random"\nbatch_size = "full"'
    ).replace('activation = ["relu", "tanh"]', 'activation = "relu"')
    study.write_text(text.replace('name = "median"', 'name = "none"').replace(
        "n_startup_trials = 2\n", ""))
    res = run_cli("run", str(study), cwd=tmp_path)
    # No trial completes, so there is nothing to export: the run says so, non-zero.
    assert res.returncode == 1 and "no completed trial" in res.stderr
    optuna_trials = json.loads(run_cli("status", str(study), "--json", cwd=tmp_path).stdout)
    assert optuna_trials["pruned"] == 2 and optuna_trials["failed"] == 0
    import optuna

    s = optuna.load_study(study_name="div", storage=f"sqlite:///{tmp_path / 'div.db'}")
    for t in s.trials:
        assert t.user_attrs["diverged"] is True
        assert t.user_attrs["pruned_reason"].startswith("diverged at epoch")


def test_an_unreachable_server_has_its_own_exit_code(tmp_path):
    before = sorted(tmp_path.iterdir())
    res = run_cli("status", "--study", "small", "--storage",
                  "postgresql+psycopg://nobody:hunter2@127.0.0.1:1/none", cwd=tmp_path)
    assert res.returncode == 3, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "cannot reach storage" in res.stderr
    assert "hunter2" not in res.stderr and sorted(tmp_path.iterdir()) == before


def test_output_lost_to_a_full_disk_is_an_error(with_empty_study):
    tmp, study = with_empty_study
    with open("/dev/full", "w") as full:
        res = subprocess.run([*NNSEARCH, "export", str(study)], cwd=tmp, text=True,
                             stdout=full, stderr=subprocess.PIPE, env=cli_env(), timeout=120)
    assert res.returncode == 1, res.stderr
    assert "the output could not be written (No space left on device)" in res.stderr


def test_a_refit_on_every_row_that_diverges_leaves_its_seed_out(finished, tmp_path,
                                                                 monkeypatch, capsys):
    """train's refits on every row may diverge where the search's did not (more rows an
    epoch): that seed is left out of the model, with a warning; none left, the model is
    the networks the test figure scores."""
    from nnsearch.model import Ensemble, Network, load
    from nnsearch.search import cli, export
    from nnsearch.search.errors import UsageError

    tmp, _study, _ = finished
    config = tmp_path / "best.json"
    shutil.copy(tmp / "small-best.json", config)
    real, calls = export.refit_all, []

    def flaky(cfg, data, epochs):
        calls.append(cfg["seed"])
        if len(calls) % 2 == 0 or "none" in str(config):
            raise UsageError("the refit on every row diverged at epoch 3 (the folds did not).")
        return real(cfg, data, epochs)

    monkeypatch.setattr(export, "refit_all", flaky)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", str(config), "--seeds", "4", "-o", "m.npz"]) == 0
    model = load(tmp_path / "m.npz")
    assert isinstance(model, Ensemble) and len(model.members) == 2 and len(calls) == 4
    assert "refitted on all" in capsys.readouterr().out
    config = config.rename(tmp_path / "none.json")
    assert cli.main(["train", str(config), "--seeds", "1", "-o", "one.npz"]) == 0
    assert isinstance(load(tmp_path / "one.npz"), Network)
    assert "refitted on all" not in capsys.readouterr().out
