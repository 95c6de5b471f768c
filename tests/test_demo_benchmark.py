"""The demo timing command reads each step's duration from Dagster's console lines (the clone-and-run itself is a
benchmark: python -m benchmarks.demo_time)."""
from benchmarks.demo_time import step_seconds


def test_step_durations_are_read_in_every_unit_dagster_prints():
    console = ('12:00:01 raw_tables - STEP_SUCCESS - Finished execution of step "raw_tables" in 983ms.\n'
               '12:00:09 mf_model - STEP_SUCCESS - Finished execution of step "mf_model" in 6m52s.\n'
               '12:00:30 ease_model - STEP_SUCCESS - Finished execution of step "ease_model" in 17.79s.\n'
               '12:01:00 text - INFO - fine-tuning step 10/20\n')
    assert step_seconds(console) == {"raw_tables": 0.983, "mf_model": 412.0, "ease_model": 17.79}
