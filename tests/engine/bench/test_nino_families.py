"""bench/nino_families.py keeps working: a short paired run of one family, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

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
