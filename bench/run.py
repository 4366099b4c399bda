"""`make bench`: the exercise's code, denselab's default path and a near-limit JAX loop, side by side.

Each side runs in its own process per model, so start-up, memory and compilation are
counted separately. Also: a variant's 3 seeds one after another vs side by side
(bench/seeds_together.py), `denselab train` as a whole command against its own epochs, and
three runtimes on each Arm core, emulated (bench/runtimes.py: denselab's C runtime, TFLM with
reference kernels, TFLM with CMSIS-NN; the C runtime and CMSIS-NN's kernels at -O2 too), and the
C runtime on the Arduino Uno under simavr where the model fits it. Prints tables of ratios measured in this run and
writes the raw numbers to reports/bench.json.
`--parts distillation` (not run by default: about 25 minutes here) times the CNN teacher and
measures what it gives a student (bench/distillation.py).
Usage: python bench/run.py [--quick] [--models 20,512x512] [--parts training,runtimes,distillation]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from denselab.deploy.boards import load_boards
from denselab.model.spec import ModelSpec

BENCH = Path(__file__).resolve().parent
MODELS = ([20], [512], [1024], [512, 512])
TRAIN_EXAMPLES = 60_000


def run_part(script: str, arguments: dict) -> dict:
    # bench/ first; a PYTHONPATH given to `make bench` (another checkout's src/) still applies.
    search_path = os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "PYTHONPATH": search_path, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, str(BENCH / script), json.dumps(arguments)],
                            capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        sys.exit(f"{script} {arguments} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def command_seconds(hidden: list[int], epochs: int) -> tuple[float, float]:
    """Wall time of `denselab train` as a user runs it (imports, data, compilation included), and
    the sum of the epoch times it reports (the first epoch includes compilation)."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        finished = subprocess.run([sys.executable, "-m", "denselab", "train", "--hidden", ",".join(map(str, hidden)),
                                   "--epochs", str(epochs), "--seed", "0", "--out", out, "--json"],
                                  check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    history = json.loads(finished.stdout)["history"]
    return seconds, sum(record["seconds"] for record in history)


def name(hidden: list[int]) -> str:
    return "x".join(map(str, hidden))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 epochs and fewer latency calls: a smoke run")
    parser.add_argument("--models", default=",".join(name(m) for m in MODELS), help="e.g. 20,512x512")
    parser.add_argument("--seeds", type=int, default=3, help="seeds trained side by side (0: skip that part)")
    parser.add_argument("--out", default="reports/bench.json")
    parser.add_argument("--parts", default="training,runtimes",
                        help="training, runtimes and/or distillation (the CNN teacher: about 25 min here)")
    options = parser.parse_args()
    parts = set(options.parts.split(","))
    if not parts or parts - {"training", "runtimes", "distillation"}:
        parser.error(f"--parts takes training, runtimes and distillation, got {options.parts!r}")
    models = [[int(units) for units in model.split("x")] for model in options.models.split(",")]
    epochs = 2 if options.quick else 5
    latency_calls = 100 if options.quick else 1000

    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
               "epochs": epochs, "models": {}}
    if "training" in parts:
        training_part(results, models, epochs, latency_calls, options.seeds)
        print_table(results)
    if "runtimes" in parts:
        print("three runtimes (and -O2 builds) on each emulated Arm core, and the Uno ...", file=sys.stderr, flush=True)
        results["runtimes"] = run_part("runtimes.py", {"epochs": 1, "images": 100})
        print_runtimes(results["runtimes"])
    if "distillation" in parts:
        print("the CNN teacher, then 768 -> 256 with and without it ...", file=sys.stderr, flush=True)
        settings = {"teacher_epochs": 1, "student_epochs": 2, "seeds": 2} if options.quick else {}
        results["distillation"] = run_part("distillation.py", settings)
        print_distillation(results["distillation"])
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"raw numbers: {out}")


def print_distillation(part: dict) -> None:
    """The teacher's time and accuracy, and the student's int8 test accuracy with and without it."""
    import statistics

    teacher, settings = part["teacher"], part["settings"]
    epochs = teacher["epoch_seconds"]
    print(f"\nCNN teacher, {teacher['epochs']} epochs on 60,000 images: {teacher['wall_seconds'] / 60:.1f} min "
          f"({statistics.median(epochs[1:] or epochs):.1f} s/epoch),\ntest accuracy {teacher['test_accuracy']:.4f}")
    rows = []
    for side in ("without", "with"):
        runs = part["students"][side]
        spread = lambda key: (f"{statistics.fmean(r[key] for r in runs):.4f} ± "  # noqa: E731
                              f"{statistics.stdev(r[key] for r in runs) if len(runs) > 1 else 0:.4f}")
        rows.append((f"{side} teacher", spread("int8"), spread("float"),
                     f"{statistics.fmean(r['epoch_seconds'] for r in runs):.2f}"))
    print(f"768 -> 256, {settings['student_epochs']} epochs, {settings['seeds']} seeds (the same on both sides):")
    print_columns(("student", "int8 test acc.", "float test acc.", "s/epoch"), rows, left=(0,))
    without, taught = (statistics.fmean(r["int8"] for r in part["students"][side]) for side in ("without", "with"))
    print(f"gain from the teacher: {taught - without:+.4f} int8 test accuracy")


RUNTIME_NAMES = {"c": "denselab C", "c-O2": "denselab C -O2", "tflm-reference": "TFLM ref.",
                 "tflm-cmsis-nn": "TFLM CMSIS-NN", "tflm-cmsis-nn-O2": "CMSIS-NN -O2"}


def print_runtimes(part: dict) -> None:
    """One table per model and core, 80 columns: the C runtime's figures and each TFLM build's, with ratios;
    then the Uno's, where a model was run on it."""
    for model in part["models"]:
        for core, runtimes in model["cores"].items():
            machines = sorted({row["machine"] for row in runtimes.values()})
            title = f"{model['model']} on the {core} (QEMU {', '.join(machines)}):"
            sizes = f"{model['macs']:,} MACs, int8 {model['int8_bytes']:,} B"
            # On two lines where the search winner's name would make one longer than 80 columns.
            print(f"\n{title} {sizes}" if len(title) + len(sizes) < 80 else f"\n{title}\n  {sizes}")
            header = ("runtime", "flash B", "RAM B", "instr./inference", "per MAC", "vs C", "identical")
            c = runtimes["c"]["instructions"]
            rows = [(RUNTIME_NAMES.get(key, key), f"{row['flash_bytes']:,}", f"{row['ram_bytes']:,}",
                     f"{row['instructions']:,}", f"{row['instructions'] / model['macs']:.2f}",
                     f"{row['instructions'] / c:.2f}x", "yes" if row["identical"] else "NO")
                    for key, row in runtimes.items()]
            print_columns(header, rows, left=(0, 6))
            if "tflm-cmsis-nn-O2" in runtimes:  # the fastest TFLM build against the C runtime as shipped
                fastest = runtimes["tflm-cmsis-nn-O2"]["instructions"]
                print(f"denselab C (-Os) / CMSIS-NN -O2: {c / fastest:.2f}x the instructions")
    images = part["models"][0]["cores"]["cortex-m4"]
    print(f"identical: int8 outputs equal to the Python TFLM interpreter's\n(test images: TFLM "
          f"{images['tflm-reference']['images']}, the C runtime {images['c']['images']}).\n"
          "Instructions by SysTick under -icount shift=0. denselab C -O2: the model's code\n"
          "at -O2. CMSIS-NN -O2: TFLM's and CMSIS-NN's kernels at -O2, the rest at -Os.")
    if not part["search_winner"]:
        print("No finished Nano 33 BLE search (reports/search/nano33ble/search.json):\nno winner measured.")
    if any("avr" in model for model in part["models"]):
        print_uno(part["models"])
    print_latencies(part["models"])


def print_latencies(models: list[dict]) -> None:
    """Each board's latency with the C runtime (-Os): its own core's instructions at its clock, one per
    cycle (an estimate; the ESP32 on the Cortex-M4's), and the Uno's measured cycles."""
    boards = load_boards()
    print("\nlatency with denselab C (-Os), ms: on the Arm boards estimated (instructions at\n"
          "the board's clock, one per cycle; the esp32 from the Cortex-M4's, not checked),\n"
          "on the uno measured (cycles under simavr)")
    header = ("model", *boards)
    rows = []
    for model in models:
        cells = [model["model"].replace("Nano 33 BLE search winner", "winner")]
        for key, chosen in boards.items():
            if chosen.measured_core == "avr":
                cycles = (model.get("avr") or {}).get("cycles_per_inference")
                cells.append(f"{cycles / chosen.clock_hz * 1e3:.1f}" if cycles else "-")
            else:
                instructions = model["cores"][chosen.measured_core]["c"]["instructions"]
                cells.append(f"{instructions / chosen.clock_hz * 1e3:.2f}")
        rows.append(tuple(cells))
    print_columns(header, rows, left=(0,))


def print_uno(models: list[dict]) -> None:
    """The C runtime on the Uno (its Classify sketch under simavr), or why a model was not run there."""
    clock = next((model["avr"]["clock_hz"] for model in models if model.get("avr")), 16_000_000)
    print(f"\nArduino Uno (ATmega328P, simavr, {clock / 1e6:.0f} MHz), denselab C:")
    header = ("model", "cycles/inference", "cycles/MAC", "ms", "flash B", "RAM B", "identical")
    rows = [(model["model"].removeprefix("Nano 33 BLE search winner").strip() or model["model"],
             f"{avr['cycles_per_inference']:,}", f"{avr['cycles_per_mac']:.2f}", f"{avr['latency_ms']:.1f}",
             f"{avr['flash_bytes']:,}", f"{avr['ram_bytes']:,}",
             f"{'yes' if avr['identical'] else 'NO'} ({avr['images']} images)")
            for model in models if (avr := model.get("avr"))]
    if rows:
        print_columns(header, rows, left=(0, 6))
    for model in models:
        if not model.get("avr"):
            # Export's one line up to its advice to a user of the command line ("; leave out --arduino").
            why = (model.get("avr_refused") or "not run").split("; ")[0]
            print("\n".join(textwrap.wrap(f"{model['model']}, not run: {why}", 80, subsequent_indent="  ")))
    print("flash: the Classify sketch without its test images; RAM: with its stack, without\nthe input image.")


def print_columns(header: tuple[str, ...], rows: list[tuple[str, ...]], left: tuple[int, ...]) -> None:
    """`rows` under `header` in columns two spaces apart, those at `left` aligned left, the rest right."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) if i in left else str(cell).rjust(width)
                        for i, (cell, width) in enumerate(zip(row, widths))).rstrip())


def training_part(results: dict, models: list[list[int]], epochs: int, latency_calls: int, seeds: int) -> None:
    for hidden in models:
        print(f"model {name(hidden)}: reference ...", file=sys.stderr, flush=True)
        # The reference's single-image latency is measured on the exercise's own model only:
        # 1000 calls of ~50 ms per model would dominate the benchmark's run time.
        reference = run_part("reference.py", {"hidden": hidden, "epochs": epochs,
                                              "latency_calls": latency_calls if hidden == models[0] else 0})
        print(f"model {name(hidden)}: denselab ...", file=sys.stderr, flush=True)
        ours = run_part("denselab_path.py", {"hidden": hidden, "epochs": epochs, "latency_calls": 100 * latency_calls})
        print(f"model {name(hidden)}: near-limit JAX loop ...", file=sys.stderr, flush=True)
        limit = run_part("near_limit.py", {"hidden": hidden, "epochs": epochs})
        results["models"][name(hidden)] = {"reference": reference, "denselab": ours, "near_limit": limit,
                                           "train_flops_per_epoch": ModelSpec(tuple(hidden)).training_flops(TRAIN_EXAMPLES)}
        if seeds > 1:
            print(f"model {name(hidden)}: {seeds} seeds alone and together ...", file=sys.stderr, flush=True)
            results["models"][name(hidden)]["seeds"] = run_part(
                "seeds_together.py", {"hidden": hidden, "epochs": epochs, "seeds": seeds})
    print("denselab train as a command ...", file=sys.stderr, flush=True)
    command, epoch_sum = command_seconds(models[0], epochs)
    results["command"] = {"hidden": models[0], "denselab_seconds": command, "denselab_epoch_seconds": epoch_sum,
                          "reference_script_seconds": results["models"][name(models[0])]["reference"]["script_seconds"]}


def print_table(results: dict) -> None:
    gflops = next(iter(results["models"].values()))["near_limit"]["matmul_gflops"]
    print(f"\nmachine: {results['machine']}; {results['epochs']} epochs; batch 32; "
          f"XLA matmul rate {gflops:.0f} GFLOP/s")
    header = ("model", "ref s/ep", "dl s/ep", "limit s/ep", "ref/dl", "dl/limit", "dl 1st ep",
              "ref acc", "dl acc", "limit acc", "dl GFLOP/s", "mem ref/dl MB")
    rows = []
    for model, sides in results["models"].items():
        ref, ours, limit = sides["reference"], sides["denselab"], sides["near_limit"]
        rows.append((
            model, f"{ref['seconds_per_epoch']:.2f}", f"{ours['seconds_per_epoch']:.2f}", f"{limit['seconds_per_epoch']:.2f}",
            f"{ref['seconds_per_epoch'] / ours['seconds_per_epoch']:.1f}x",
            f"{ours['seconds_per_epoch'] / limit['seconds_per_epoch']:.2f}x",
            f"{ours['first_epoch_seconds']:.2f}", f"{ref['test_accuracy']:.4f}", f"{ours['test_accuracy']:.4f}",
            f"{limit['test_accuracy']:.4f}", f"{sides['train_flops_per_epoch'] / ours['seconds_per_epoch'] / 1e9:.1f}",
            f"{ref['peak_memory_mb']:.0f}/{ours['peak_memory_mb']:.0f}",
        ))
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths)))
    first = next(iter(results["models"].values()))
    ref, ours = first["reference"], first["denselab"]
    print(f"\nsingle-image predict: reference model.predict {ref['single_predict_seconds'] * 1e3:.2f} ms, "
          f"denselab {ours['single_predict_seconds'] * 1e6:.1f} us "
          f"({ref['single_predict_seconds'] / ours['single_predict_seconds']:.0f}x)")
    for model, sides in results["models"].items():
        ref, ours = sides["reference"], sides["denselab"]
        print(f"predict 10000 test images, {model}: reference {ref['predict_10000_seconds']:.3f} s, "
              f"denselab {ours['predict_10000_seconds']:.3f} s "
              f"({ref['predict_10000_seconds'] / ours['predict_10000_seconds']:.1f}x)")
    command = results["command"]
    print(f"whole command, {name(command['hidden'])}, {results['epochs']} epochs: reference script "
          f"{command['reference_script_seconds']:.1f} s, denselab train {command['denselab_seconds']:.1f} s "
          f"({command['reference_script_seconds'] / command['denselab_seconds']:.1f}x); denselab train is "
          f"{command['denselab_seconds'] / command['denselab_epoch_seconds']:.2f}x the sum of its epochs "
          f"({command['denselab_epoch_seconds']:.2f} s)")
    seeds = {model: sides["seeds"] for model, sides in results["models"].items() if "seeds" in sides}
    if seeds:
        first = next(iter(seeds.values()))
        print(f"\n{first['seeds']} seeds of one model on {first['device']}, s/epoch per seed:")
        for model, part in seeds.items():
            alone = part["one_after_another"]["seconds_per_epoch_per_seed"]
            together = part["together"]["seconds_per_epoch_per_seed"]
            print(f"  {model}: one after another {alone:.3f}, side by side {together:.3f} "
                  f"({alone / together:.2f}x); test accuracies {part['one_after_another']['test_accuracy']} "
                  f"vs {part['together']['test_accuracy']}")


if __name__ == "__main__":
    main()
