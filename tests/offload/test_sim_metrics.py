"""Section VI-D metrics and eq. (17) from hand-made slot infos, the baseline command and the
calibration study command."""

import numpy as np
import pytest

from grle_common.cli import run_cli
from offload.sim import MECConfig, OffloadEnv, calibration, optimal_decision
from offload.sim.baselines import greedy_decision, main_branch_greedy_decision
from offload.sim.metrics import BatchMetrics, normalised_reward
from offload.sim.run_baselines import main as run_baselines


def test_metrics_from_two_slots():
    acc = BatchMetrics(1)
    acc.add(
        {
            "num_tasks": 4,
            "num_success": 3,
            "accuracy_sum": 0.8 + 0.9 + 0.9,
            "q_sum": 1.0,
            "slot_ms": 30.0,
        },
        [1.0],
    )
    acc.add(
        {"num_tasks": 2, "num_success": 0, "accuracy_sum": 0.0, "q_sum": 0.2, "slot_ms": 30.0},
        [0.5],
    )
    (m,) = acc.result()
    assert (m.slots, m.tasks) == (2, 6)
    assert m.avg_accuracy == pytest.approx(2.6 / 6)
    assert m.ssp == pytest.approx(0.5)
    assert m.throughput_per_s == pytest.approx(3 / 0.06)  # 3 successes in 60 ms
    assert m.mean_q == pytest.approx(0.6)
    assert m.mean_normalised_reward == pytest.approx(0.75)


def test_normalised_reward_of_optimum_is_one(hand_state):
    state = hand_state()
    best = optimal_decision(state)
    assert normalised_reward(state, best.decision) == pytest.approx(1.0)
    worse = normalised_reward(state, np.array([1, 1, 1]))
    assert 0.0 < worse < 1.0


@pytest.mark.parametrize(
    ("argv", "last"),
    [
        (["--slots", "0"], "argument --slots: must be an integer ≥ 1 (got 0)"),
        (["--seed", "-1"], "argument --seed: must be an integer ≥ 0 (got -1)"),
        (["--num-devices", "0"], "argument --num-devices: must be an integer ≥ 1 (got 0)"),
        (["--slot-ms", "0"], "argument --slot-ms: must be a number > 0 (got 0)"),
        (["--scenarios", "1", "5"], "argument --scenarios: must be an integer ≥ 1 and ≤ 4 (got 5)"),
        (["--compute-scale", "-2"], "argument --compute-scale: must be a number > 0 (got -2)"),
        (["--max-devices", "0"], "argument --max-devices: must be an integer ≥ 1 (got 0)"),
        (["--optimum-every", "-1"], "argument --optimum-every: must be an integer ≥ 0 (got -1)"),
    ],
)  # fmt: skip
def test_baseline_command_refuses_a_number_out_of_range(capsys, argv, last):
    with pytest.raises(SystemExit) as exc:
        run_baselines(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(f": error: {last}")


def test_baseline_command_refuses_flags_that_do_not_fit_together(capsys, paper_table_path):
    argv = ["--table", str(paper_table_path), "--num-devices", "6", "--max-devices", "4"]
    assert run_cli(run_baselines, argv) == 2
    assert capsys.readouterr() == (
        "",
        "error: max_devices=4 is below num_devices=6; raise it or leave it None. Fix the flag "
        "and run again.\n",
    )


def test_baseline_command_counts_every_task(capsys):
    rows = run_baselines(
        [
            "--slots",
            "20",
            "--scenarios",
            "1",
            "2",
            "--policies",
            "random",
            "greedy",
            "--optimum-every",
            "10",
            "--num-devices",
            "6",
        ]
    )
    out = capsys.readouterr().out
    assert "main_branch_greedy" not in out and out.count("greedy") == 2
    assert [(r["scenario"], r["policy"]) for r in rows] == [
        (1, "random"),
        (1, "greedy"),
        (2, "random"),
        (2, "greedy"),
    ]
    for r in rows:
        assert r["tasks"] == 120 and 0.0 <= r["avg_accuracy"] <= r["ssp"] <= 1.0
        assert 0.0 < r["mean_normalised_reward"] <= 1.0 + 1e-12
    by = {(r["scenario"], r["policy"]): r for r in rows}
    assert by[(1, "greedy")]["mean_q"] > by[(1, "random")]["mean_q"]


def average_accuracy(table, cfg: MECConfig, decide, slots: int, seed: int) -> tuple[float, float]:
    """Σ accuracy of the successful tasks / all tasks (Section VI-D) and the SSP, summed here
    from the environment's per-slot outcomes (not through `BatchMetrics`)."""
    env = OffloadEnv(table, cfg)
    env.reset(seed=seed)
    accuracy = success = tasks = 0.0
    for _ in range(slots):
        out = env.step(decide(env.slot_state))[4]["outcome"]
        accuracy += out.accuracy[out.success].sum()
        success += out.success.sum()
        tasks += len(out.success)
    return accuracy / tasks, success / tasks


def test_calibration_command_prints_every_reading_and_scenario(
    capsys, paper_table, paper_table_path
):
    args = ["--slots", "4", "--num-devices", "3", "--seed", "2", "--table", str(paper_table_path)]
    calibration.main(args)
    lines = capsys.readouterr().out.splitlines()
    first = lines.index("| reading | scenario 1 | scenario 2 | scenario 3 | scenario 4 |")
    rows = lines[first + 2 : first + 3 + len(calibration.READINGS)]
    assert rows[0].startswith("| paper: GRL / GRLE | 0.60 / 0.77 |")
    cells = {}
    for row, (name, _) in zip(rows[1:], calibration.READINGS, strict=True):
        parts = [c.strip() for c in row.strip("|").split("|")]
        assert parts[0] == name and len(parts) == 5
        for scenario, cell in enumerate(parts[1:], start=1):
            main_only, rest = cell.split(" / ")
            greedy, ssp = rest.rstrip(")").split(" (")
            values = float(main_only), float(greedy), float(ssp)
            assert all(0.0 <= v <= 1.0 for v in values) and values[0] <= values[2]
            cells[name, scenario] = cell
    # one cell recomputed here: compute x4, scenario 2 (M = 3, τ = 30 ms, 4 slots, seed 2)
    cfg = MECConfig(num_devices=3, slot_ms=30.0, scenario=2, compute_scale=4.0)
    main_acc, main_ssp = average_accuracy(paper_table, cfg, main_branch_greedy_decision, 4, 2)
    greedy_acc, _ = average_accuracy(paper_table, cfg, greedy_decision, 4, 2)
    assert cells["compute x4", 2] == f"{main_acc:.2f} / {greedy_acc:.2f} ({main_ssp:.2f})"
    # the τ = 10 ms table: one row per late-task policy
    second = next(i for i, line in enumerate(lines) if line.startswith("| late tasks |"))
    policies = [line.split("|")[1].strip() for line in lines[second + 2 : second + 4]]
    assert policies == ["send", "drop"]
