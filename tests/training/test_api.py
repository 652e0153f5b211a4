"""The public training API stays callable whatever submodules were imported first."""

import importlib


def test_fit_stays_a_function_after_its_submodule_is_imported():
    importlib.import_module("tfkit.training.fit")
    importlib.import_module("tfkit.training.loop")
    import tfkit.training

    assert callable(tfkit.training.fit)
    assert tfkit.training.fit.__module__ == "tfkit.training.session"
    assert callable(tfkit.training.compile_model)
