"""GUI tests train with the app's thread count: all cores but one, the last one kept for the window."""

import pytest

from ikd_gui.gui.controller import leave_a_core_for_the_window


@pytest.fixture(autouse=True, scope="session")
def _train_like_the_app():
    leave_a_core_for_the_window()
