"""`denselab boards` and the largest model of the exercise each board holds, per runtime.

The reference is the fit rule itself (denselab.deploy.boards), asked at the answer and one unit
past it; for TFLM with the real converter's int8 sizes and LiteRT's arenas of those models.
"""

import json

from conftest import assert_fits_80_columns, denselab
from denselab.deploy.boards import c_figures, fit, io_bytes, load_boards, tflm_fit_on
from denselab.deploy.largest import TFLMSizes, largest_c, largest_tflm
from denselab.deploy.tflite import calibration_images
from denselab.deploy.tflm_runtime import tflm_runtimes


def test_the_largest_c_model_fits_and_one_unit_more_does_not(fashion):
    io = io_bytes(fashion)
    for key, board in load_boards().items():
        units = largest_c(board, fashion.class_names, io)
        assert units >= 1, key
        for hidden, fits in ((units, True), (units + 1, False)):
            flash, ram, _ = c_figures(board, (hidden,), fashion.class_names)
            assert fit(board, flash, ram, io, 0).fits is fits, (key, hidden)


def test_the_largest_tflm_model_fits_and_one_unit_more_does_not(fashion):
    """On the SAMD21 (Cortex-M0+), with real int8 files; the Uno's AVR runs no TFLM."""
    boards, io, runtimes = load_boards(), io_bytes(fashion), tflm_runtimes()
    sizes = TFLMSizes(calibration_images(fashion, 32))
    units = largest_tflm(boards["samd21"], sizes, io, runtimes)
    assert tflm_fit_on(boards["samd21"], *sizes(units), io, runtimes).fits
    assert not tflm_fit_on(boards["samd21"], *sizes(units + 1), io, runtimes).fits
    assert largest_tflm(boards["uno"], sizes, io, runtimes) is None


def test_the_boards_command_lists_every_board_with_its_core_and_check(fashion):
    result = denselab("boards", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["key"]: row for row in json.loads(result.stdout)["boards"]}
    assert set(rows) == set(load_boards())
    assert rows["uno"]["tflm_units"] is None and rows["uno"]["core"] == "avr"
    assert not rows["esp32"]["checked_here"] and rows["esp32"]["check_note"] == "not checked here (no Xtensa toolchain)"
    assert rows["samd21"]["c_units"] == largest_c(load_boards()["samd21"], fashion.class_names, io_bytes(fashion))
    # The C runtime needs less than TFLM everywhere TFLM runs.
    assert all(row["c_units"] > row["tflm_units"] for row in rows.values() if row["tflm_units"] is not None)
    text = denselab("boards")
    assert text.returncode == 0 and "not checked here (no Xtensa toolchain)" in text.stdout
    assert_fits_80_columns(text.stdout)


def test_tflm_is_refused_for_the_uno_in_one_line_and_its_verdict_says_why(fashion, tmp_path):
    from conftest import assert_one_line_error
    from denselab.deploy.boards import target_verdict

    result = denselab("search", "--target", "uno", "--runtime", "tflm", "--out", tmp_path / "out")
    assert_one_line_error(result, "TFLM does not run on the Arduino Uno's AVR", "search it with --runtime c")
    assert not (tmp_path / "out").exists()
    verdict = target_verdict("uno", {}, 20_000, 3_000, io_bytes(fashion), tflm_runtimes())
    assert not verdict["fits"] and verdict["flash_margin_bytes"] is None and "needs a 32-bit core" in verdict["reason"]
    assert verdict["core"] == "avr" and verdict["checked_here"]


def test_every_fit_judges_a_board_on_its_own_cores_tflm_figures(fashion):
    """The SAMD21 (Cortex-M0+) carries the M0+ build's TFLM code, the Nano 33 BLE the M4's, the ESP32 the M4's."""
    boards, runtimes, io = load_boards(), tflm_runtimes(), io_bytes(fashion)
    assert runtimes["cortex-m0plus"].code_bytes > runtimes["cortex-m4"].code_bytes  # measured, not assumed
    for key in ("samd21", "nano33ble", "esp32", "stm32f746disco"):
        chosen = boards[key]
        runtime = runtimes[chosen.measured_core]
        # A model exactly at the board's flash limit with its own core's TFLM code fits, one byte more does not.
        model = chosen.flash_bytes - runtime.code_bytes
        assert tflm_fit_on(chosen, model, 1_000, io, runtimes).fits
        assert not tflm_fit_on(chosen, model + 1, 1_000, io, runtimes).fits
