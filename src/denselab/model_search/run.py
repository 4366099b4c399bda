"""Driving a search: Optuna proposes trials, the run engine trains them, successive halving promotes.

Rung 0 trains `trials` proposals for a few epochs each, in batches as wide as the executor
runs at once, telling Optuna each int8 validation accuracy so its sampler (TPE, with the
board as a constraint) learns between batches. Proposals that cannot fit the board are
refused before they train. The best third of each rung is trained again, from scratch,
for three times the epochs, up to `epochs_max`. Every training is a run in the run store
and Optuna's trials live in a journal file, so a search that is stopped, even by kill -9,
continues where it was, and a finished one is read back in seconds.
"""

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from denselab.data.dataset import Dataset
from denselab.errors import BadInput
from denselab.extras import extra_imports
from denselab.model_search import space
from denselab.model_search.split import VALIDATION_IMAGES, check_validation_size
from denselab.model_search.target import Footprints, Target
from denselab.runs.engine import execute, plan_runs, plan_teacher, teacher_summary, train_runs
from denselab.runs.store import RunStore
from denselab.training.config import MAX_SEED, TEACHERS, TrainConfig

ETA = 3  # successive halving keeps the best 1/ETA of a rung and trains it ETA times longer
MISSES_PER_TRIAL = 20  # proposals that cannot fit or fail, per trial asked for, before the search gives up


@dataclass(frozen=True)
class SearchSettings:
    trials: int = 30
    epochs_max: int = 18
    seed: int = 0
    time_budget_minutes: float | None = None
    validation: int = VALIDATION_IMAGES
    # A teacher used only while training (TrainConfig.teacher): the trials' teacher trains on
    # their training split, the finalists' on all training images, both with this search's seed.
    teacher: str = "none"
    teacher_epochs: int = TrainConfig.teacher_epochs

    def __post_init__(self):
        if not isinstance(self.trials, int) or self.trials < 1:
            raise BadInput(f"--trials must be at least 1, got {self.trials}")
        if not isinstance(self.epochs_max, int) or self.epochs_max < 1:
            raise BadInput(f"--epochs-max must be at least 1, got {self.epochs_max}")
        if self.time_budget_minutes is not None and not self.time_budget_minutes > 0:
            raise BadInput(f"--time-budget must be a positive number of minutes, got {self.time_budget_minutes}")
        if not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise BadInput(f"--seed must be an integer from 0 to {MAX_SEED}, got {self.seed}")
        check_validation_size(self.validation)
        if self.teacher not in TEACHERS:
            raise BadInput(f"--teacher {self.teacher!r} is not a teacher; choose one of {', '.join(TEACHERS)}")
        try:  # --teacher-epochs is checked with or without a teacher, as TrainConfig checks it
            TrainConfig(teacher=self.teacher, teacher_epochs=self.teacher_epochs)
        except BadInput as error:  # "teacher-epochs must be ...": the option's name
            raise BadInput(f"--{error}") from None

    def distillation(self) -> dict:
        """The trials' and finalists' distillation settings (TrainConfig's names); {} without a teacher."""
        if self.teacher == "none":
            return {}
        return {"teacher": self.teacher, "teacher_epochs": self.teacher_epochs, "teacher_seed": self.seed}

    def rungs(self) -> list[int]:
        """Epochs of each rung, e.g. [2, 6, 18] for epochs_max 18."""
        return sorted({max(1, self.epochs_max // ETA ** 2), max(1, self.epochs_max // ETA), self.epochs_max})


@dataclass(frozen=True)
class Progress:
    phase: str  # "trials", "rung 2 of 3", "finalists"
    done: int
    total: int
    best: float | None  # the best int8 validation accuracy so far
    seconds_left: float | None


@dataclass
class Trial:
    """One proposal of the search and what became of it."""

    number: int
    params: dict
    int8_bytes: int
    arena_bytes: int
    status: str  # "rejected" (does not fit), "failed", or "trained"
    runs: dict[int, dict]  # epochs -> the stored run at that rung

    @property
    def hidden_units(self) -> tuple[int, ...]:
        return space.hidden_units(self.params)

    @property
    def top_epochs(self) -> int | None:
        return max(self.runs) if self.runs else None

    @property
    def accuracy(self) -> float | None:
        """int8 validation accuracy at the highest rung the trial reached."""
        return self.runs[self.top_epochs]["int8_accuracy"] if self.runs else None


def search_name(target: Target, settings: SearchSettings) -> str:
    budget = target.key if target.key != "custom" else f"custom-{target.flash_bytes}-{target.ram_bytes}"
    teacher = "" if settings.teacher == "none" else f"-t{settings.teacher}{settings.teacher_epochs}"
    return f"search-{budget}-{target.runtime}-e{settings.epochs_max}-s{settings.seed}-v{settings.validation}{teacher}"


def open_journal(path: Path, name: str, split_record: dict, sampler):
    """The Optuna study of this search in its journal file, made on first use and checked after."""
    with extra_imports():
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    identity = {"kind": "denselab-search", "space_version": space.SPACE_VERSION, "validation": split_record}
    try:
        storage = JournalStorage(JournalFileBackend(str(path)))
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize", sampler=sampler,
                                    load_if_exists=True)
    except Exception as error:  # noqa: BLE001 - any unreadable journal is the user's file to fix
        raise BadInput(f"search journal {path} cannot be used ({type(error).__name__}: {error})") from None
    if not study.user_attrs:
        for key, value in identity.items():
            study.set_user_attr(key, value)
    elif {key: study.user_attrs.get(key) for key in identity} != identity:
        raise BadInput(f"search journal {path} holds a search {name!r} of another kind (its space or validation "
                       "split differs from this denselab's); use another --db")
    return study


def require_room(target: Target, footprints: Footprints) -> None:
    """Refuse a budget that not even the search's smallest model fits, saying that model's size."""
    smallest = space.smallest_architecture()
    size, arena = footprints(smallest)
    needed = target.fit_of(size, arena)
    if not needed.fits:
        raise BadInput(f"{target.name} is too small for any model of the search: the smallest, Dense{smallest}, "
                       f"needs {size:,} bytes of flash for the model (limit {target.model_flash_limit:,}) and "
                       f"{needed.ram_needed:,} bytes of RAM (limit {target.ram_bytes:,})")


def run_search(
    target: Target, settings: SearchSettings, trial_data: Dataset, split_record: dict, footprints: Footprints,
    store: RunStore, journal_path: Path, models_dir: Path, executor, batch: int = 1,
    on_progress: Callable[[Progress], None] | None = None, task=train_runs,
) -> tuple[list[Trial], dict[str, float]]:
    """Run (or resume) the trials and promotions of a search; the test set is never touched.

    Args:
        trial_data: training images without the validation split, scored on that split
            (split.split_for_search).
        batch: proposals trained at once, as many as the executor runs in parallel.

    Returns:
        Every trial in proposal order, and how much each choice mattered to rung 0's int8
        validation accuracy (PED-ANOVA over the trained trials).
    """
    with extra_imports():
        import optuna

    name = search_name(target, settings)
    sampler = optuna.samplers.TPESampler(seed=settings.seed)  # it reads each trial's constraint (set_constraint)
    study = open_journal(journal_path, name, split_record, sampler)
    context = _Context(target, settings, trial_data, store, models_dir, executor, name, on_progress, task)
    _rung_zero(study, context, footprints, batch)
    trials = _trials(study, context)
    _promote(trials, context)
    return trials, importances(study)


@dataclass
class _Context:
    target: Target
    settings: SearchSettings
    data: Dataset
    store: RunStore
    models_dir: Path
    executor: object
    name: str
    on_progress: Callable | None
    task: Callable
    started: float = 0.0

    def __post_init__(self):
        self.started = time.monotonic()

    def time_is_up(self) -> bool:
        budget = self.settings.time_budget_minutes
        return budget is not None and time.monotonic() - self.started > budget * 60

    def train(self, pairs: list[tuple[dict, int, str]]) -> list[dict | None]:
        """Train (params, epochs, name) through the run engine; the stored run of each, or None if it failed."""
        distillation = self.settings.distillation()
        variants = [(space.variant_of(params, epochs, name, distillation), self.settings.seed)
                    for params, epochs, name in pairs]
        requests = plan_runs(self.name, variants, {self.data.name: self.data}, self.models_dir)
        teacher = requests[0].teacher if requests else None
        if teacher is not None and self.store.finished(teacher.key) is None:  # minutes before the first trial
            self.report("teacher", 0, 1, None)
        execute(requests, self.store, {self.data.name: self.data}, self.executor, task=self.task)
        return [self.store.finished(request.key) for request in requests]

    def stored(self, params: dict, epochs: int, name: str) -> dict | None:
        """The finished run of (params, epochs, name), if the store has it."""
        variant = space.variant_of(params, epochs, name, self.settings.distillation())
        [request] = plan_runs(self.name, [(variant, self.settings.seed)], {self.data.name: self.data}, self.models_dir)
        return self.store.finished(request.key)

    def report(self, phase: str, done: int, total: int, best: float | None) -> None:
        if self.on_progress:
            elapsed = time.monotonic() - self.started
            left = elapsed / done * (total - done) if done else None
            self.on_progress(Progress(phase, done, total, best, left))


def _trial_name(number: int, epochs: int) -> str:
    return f"t{number:04d}-e{epochs}"


def _rung_zero(study, context: _Context, footprints: Footprints, batch: int) -> None:
    with extra_imports():
        import optuna

    epochs = context.settings.rungs()[0]
    target, wanted = context.target, context.settings.trials
    if not study.trials:  # a new search: the known good recipes first (space.STARTING_POINTS)
        for point in space.STARTING_POINTS:
            study.enqueue_trial(point)
    trained = lambda: [t for t in study.trials if _was_trained(t)]  # noqa: E731
    # A trial left running by a stopped search is trained again: its run may be stored already.
    pending = []
    for frozen in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        if "standardize" in frozen.params:
            pending.append(frozen)
        else:  # stopped before it was fully proposed
            study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
    misses = 0  # proposals refused or failed in this session: bounded, so a search always ends
    while len(trained()) < wanted and not context.time_is_up():
        while len(pending) < batch and len(trained()) + len(pending) < wanted:
            if misses >= MISSES_PER_TRIAL * wanted:
                raise BadInput(f"{target.name}: {misses} proposals did not fit or failed to train for "
                               f"{len(trained())} that trained; see `denselab runs list` for failures")
            trial = study.ask()
            hidden = space.sample_architecture(trial)
            size, arena = footprints(hidden)
            trial.set_user_attr("int8_bytes", size)
            trial.set_user_attr("arena_bytes", arena)
            trial.set_user_attr("constraint", target.excess(size, arena))
            trial.set_constraint("fits_board", target.excess(size, arena))
            if not target.fits(size, arena):
                study.tell(trial, 0.0)  # infeasible through its constraint: the sampler learns to avoid it
                misses += 1
                continue
            space.sample_training(trial)
            pending.append(trial)
        if not pending:
            break
        runs = context.train([(trial.params, epochs, _trial_name(trial.number, epochs)) for trial in pending])
        for trial, run in zip(pending, runs):
            if run is None:
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
                misses += 1
                continue
            study.tell(trial.number, run["int8_accuracy"])
        pending = []
        best = max((t.value for t in trained()), default=None)
        context.report("trials", len(trained()), wanted, best)


def _was_trained(frozen) -> bool:
    """Complete, and within the budget (a refused proposal is complete with a positive constraint)."""
    with extra_imports():
        import optuna

    return frozen.state == optuna.trial.TrialState.COMPLETE and frozen.user_attrs.get("constraint", 1) <= 0


def _trials(study, context: _Context) -> list[Trial]:
    """Every proposal with its rung-0 run, read back from the journal and the run store."""
    with extra_imports():
        import optuna

    epochs = context.settings.rungs()[0]
    trials = []
    for frozen in study.trials:
        if "int8_bytes" not in frozen.user_attrs or frozen.state == optuna.trial.TrialState.RUNNING:
            continue
        runs = {}
        if _was_trained(frozen):
            run = context.stored(frozen.params, epochs, _trial_name(frozen.number, epochs))
            runs = {epochs: run} if run else {}
        status = "trained" if runs else ("failed" if frozen.state == optuna.trial.TrialState.FAIL else "rejected")
        trials.append(Trial(frozen.number, frozen.params, frozen.user_attrs["int8_bytes"],
                            frozen.user_attrs["arena_bytes"], status, runs))
    return trials


def _promote(trials: list[Trial], context: _Context) -> None:
    """Successive halving: the best 1/ETA of each rung trains again for the next rung's epochs."""
    rungs = context.settings.rungs()
    for index, (previous, epochs) in enumerate(zip(rungs, rungs[1:]), start=2):
        ranked = sorted((t for t in trials if previous in t.runs), key=lambda t: -t.runs[previous]["int8_accuracy"])
        promoted = ranked[: max(1, math.ceil(len(ranked) / ETA))]
        if not promoted or context.time_is_up():
            return
        context.report(f"rung {index} of {len(rungs)}", 0, len(promoted), None)
        runs = context.train([(t.params, epochs, _trial_name(t.number, epochs)) for t in promoted])
        for trial, run in zip(promoted, runs):
            if run is not None:
                trial.runs[epochs] = run
        best = max((run["int8_accuracy"] for run in runs if run), default=None)
        context.report(f"rung {index} of {len(rungs)}", len(promoted), len(promoted), best)


def trial_teacher(settings: SearchSettings, trial_data: Dataset, store: RunStore, models_dir: Path) -> dict | None:
    """The trials' teacher, as teacher_summary says it: trained on the trial split, scored on validation."""
    config = TrainConfig(**settings.distillation())
    return teacher_summary(store, plan_teacher(config, trial_data, models_dir))


def pareto_front(trials: list[Trial]) -> list[Trial]:
    """Among the trials that reached the highest rung: none smaller is as accurate. Smallest first."""
    top = max((t.top_epochs for t in trials if t.runs), default=None)
    candidates = sorted((t for t in trials if t.top_epochs == top and top is not None),
                        key=lambda t: (t.int8_bytes, -t.accuracy))
    front, best = [], -1.0
    for trial in candidates:
        if trial.accuracy > best:
            front.append(trial)
            best = trial.accuracy
    return front


def importances(study) -> dict[str, float]:
    """PED-ANOVA importance of each choice for rung 0's int8 validation accuracy; {} with too few trials.

    Refused proposals (scored 0 through their constraint) are left out: they would make the
    architecture look decisive for a reason that is not accuracy.
    """
    with extra_imports():
        import optuna

    trained = [trial for trial in study.trials if _was_trained(trial)]
    if len(trained) < 3:
        return {}
    only_trained = optuna.create_study(direction="maximize")
    only_trained.add_trials(trained)
    try:
        # PED-ANOVA needs no scikit-learn (fANOVA would): one dependency fewer for one table.
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        with warnings.catch_warnings():
            # With few trials it warns that some choices were tried fewer than twice; the
            # report's trial table shows how few there were, and stderr stays the user's.
            warnings.simplefilter("ignore", UserWarning)
            return dict(optuna.importance.get_param_importances(only_trained, evaluator=evaluator))
    except (RuntimeError, ValueError):  # every trained trial alike in every choice
        return {}
