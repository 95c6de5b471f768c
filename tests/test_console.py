"""The run's console (``orchestration/console.py``): every step's outcome and the assets' own messages reach it,
Dagster's DEBUG bookkeeping does not (it stays in the event log), and DEBUG can still be asked for."""

import dagster as dg

from orchestration.console import outcome_console


@dg.asset
def first(context: dg.AssetExecutionContext) -> int:
    context.log.info("first says hello")
    return 1


@dg.asset
def second(first: int) -> int:
    return first + 1


def _run(capsys, log_level=None) -> str:
    job = dg.define_asset_job("tiny", selection=dg.AssetSelection.all())
    defs = dg.Definitions(assets=[first, second], jobs=[job], loggers={"console": outcome_console})
    config = {} if log_level is None else {"log_level": log_level}
    result = defs.resolve_job_def("tiny").execute_in_process(run_config={"loggers": {"console": {"config": config}}})
    assert result.success
    return capsys.readouterr().err


def test_each_step_outcome_and_the_assets_messages_reach_the_console(capsys):
    err = _run(capsys)
    lines = err.splitlines()
    assert any(line.endswith("first says hello") and " first - " in line for line in lines)
    for step in ("first", "second"):
        assert any(f" {step} - STEP_SUCCESS - " in line for line in lines), err
    # Dagster's bookkeeping (step started, input loaded, output handled) stays out
    assert "STEP_START" not in err and "LOADED_INPUT" not in err and "HANDLED_OUTPUT" not in err
    assert all(len(line) < 200 for line in lines)  # no run id and pid repeated on every line


def test_debug_prints_the_bookkeeping_too(capsys):
    err = _run(capsys, "DEBUG")
    assert "STEP_SUCCESS" in err and ("Started execution of step" in err or "STEP_START" in err)


@dg.asset
def broken() -> int:
    raise ValueError("the cause a user needs to read")


def test_a_failed_step_prints_its_error(capsys):
    job = dg.define_asset_job("fails", selection=dg.AssetSelection.assets(broken))
    defs = dg.Definitions(assets=[broken], jobs=[job], loggers={"console": outcome_console})
    result = defs.resolve_job_def("fails").execute_in_process(
        run_config={"loggers": {"console": {"config": {}}}}, raise_on_error=False)
    assert not result.success
    err = capsys.readouterr().err
    assert " broken - STEP_FAILURE - " in err and "the cause a user needs to read" in err
