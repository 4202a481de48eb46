"""bench/nino_families.py keeps working: a short paired run of one family, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.engine.nino.published import require_checkpoint
from tests.paths import bench_module

bench = bench_module("nino_families")


def test_a_short_paired_vit_run_writes_both_methods_from_the_same_weights(tmp_path: Path) -> None:
    require_checkpoint("nino_no_posw")
    out = tmp_path / "families.json"
    argv = ["--quick", "--families", "vit", "--steps", "40", "--out", str(out)]
    assert bench.main(argv) == 0

    entry = json.loads(out.read_text())["families"]["vit"]
    plain, nino = entry["runs"]["none"]["0"], entry["runs"]["nino"]["0"]
    assert plain["initial_weights_checksum"] == nino["initial_weights_checksum"]
    assert nino["jumps"] == 2  # a jump every 20 steps of the quick protocol
    assert nino["nowcast_share"] > 0.9
    assert plain["nowcast_share"] is None
    # Evaluated one step after each jump, on the same grid for both methods.
    assert [s for s, _ in plain["curve"]] == [s for s, _ in nino["curve"]] == [10, 21, 30]
    summary = entry["summary"]
    assert set(summary["targets"]) == {"end", "best"}
    assert "steps_to_target" in summary["methods"]["nino"]


def test_a_family_nino_refuses_is_reported_with_the_sentence_not_a_crash(capsys) -> None:
    runs = {
        "none": {"0": {"curve": [[10, 0.5], [20, 0.6], [30, 0.7]], "mean_last3": 0.6,
                       "final": 0.7, "final_step": 30, "nowcast_share": None,
                       "overhead": 0.0, "steps_per_s": 9.0}},
        "nino": {"0": {"method": "nino", "seed": 0,
                       "refused": "NiNo can place none of the model's parameters."}},
    }  # fmt: skip
    summary = bench.summarize_family("accuracy", runs)

    assert summary["methods"]["nino"]["refused"].startswith("NiNo can place none")
    assert summary["targets"] == {"end": 0.6, "best": 0.7}
    assert summary["methods"]["none"]["steps_to_target"]["end"]["median"] == 20
    bench.print_table({"toy": summary})
    assert "refused: NiNo can place none" in capsys.readouterr().out


def test_a_fine_tuned_meta_model_runs_as_its_own_method_and_its_file_is_recorded(
    tmp_path: Path, capsys
) -> None:
    from workers.nino import NiNoModel
    from workers.nino.metatrain import save_weights
    from workers.provenance import sha256_file

    torch.manual_seed(0)
    weights = save_weights(NiNoModel(), tmp_path / "nino_test.pt")
    out = tmp_path / "families.json"
    argv = ["--quick", "--families", "vit", "--steps", "20", "--methods", "none", "nino_ft",
            "--nino-ft-weights", str(weights), "--out", str(out), "--resume"]  # fmt: skip
    assert bench.main(argv) == 0

    doc = json.loads(out.read_text())
    entry = doc["families"]["vit"]
    record = entry["runs"]["nino_ft"]["0"]
    expected = {"path": str(weights.resolve()), "sha256": sha256_file(weights)}
    assert record["weights"] == expected and record["jumps"] == 1
    plain = entry["runs"]["none"]["0"]
    assert record["initial_weights_checksum"] == plain["initial_weights_checksum"]
    assert doc["invocations"][-1]["nino_ft_weights"] == expected
    assert entry["summary"]["methods"]["nino_ft"]["weights"] == [expected]
    assert "vit nino_ft: meta-model" in capsys.readouterr().out
    # The weights are the run's, not the family's protocol: stored runs of other methods stay.
    assert "weights" not in entry["protocol"] and "nino_ft" not in json.dumps(entry["protocol"])

    # Other weights: the stored nino_ft run is run again; the plain run is kept.
    torch.manual_seed(1)
    save_weights(NiNoModel(), weights)
    assert bench.main(argv) == 0
    assert "nino_ft seed 0 again: stored with other weights" in capsys.readouterr().out
    again = json.loads(out.read_text())["families"]["vit"]["runs"]
    assert again["nino_ft"]["0"]["weights"]["sha256"] == sha256_file(weights)
    assert again["none"]["0"] == entry["runs"]["none"]["0"]


def test_nino_ft_without_weights_is_refused_by_the_argument_parser(capsys) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--methods", "nino_ft"])
    assert "--nino-ft-weights" in capsys.readouterr().err


def test_a_write_keeps_runs_another_invocation_stored_meanwhile() -> None:
    proto = {"family": "llama"}
    run = {"curve": [[10, 9.0]], "mean_last3": 9.0, "final": 9.0, "final_step": 10,
           "nowcast_share": None, "overhead": 0.0, "steps_per_s": 9.0}  # fmt: skip
    ours = {"invocations": [{"command": "ours"}],
            "families": {"llama": {"protocol": proto, "runs": {
                "nino_ft": {"0": {**run, "method": "nino_ft"}},
                "none": {"1": {**run, "final": 1.0}}}}}}  # fmt: skip
    stored = {"invocations": [{"command": "theirs"}],
              "families": {"llama": {"protocol": proto, "runs": {
                  "none": {"0": run, "1": {**run, "final": 2.0}}}},
                  "vit": {"protocol": {"family": "vit"}, "runs": {}}}}  # fmt: skip
    bench.merge_stored(ours, stored, made={("llama", "nino_ft", "0")})

    runs = ours["families"]["llama"]["runs"]
    assert list(runs) == ["none", "nino_ft"]  # in METHODS order
    assert runs["none"]["0"] == run  # theirs, which this invocation did not have
    assert runs["none"]["1"]["final"] == 2.0  # theirs is newer than our stale copy
    assert runs["nino_ft"]["0"]["method"] == "nino_ft"  # ours, made here
    assert "vit" in ours["families"]
    assert [i["command"] for i in ours["invocations"]] == ["theirs", "ours"]
    assert "nino_ft" in ours["families"]["llama"]["summary"]["methods"]
