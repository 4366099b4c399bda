"""The training loop on the JAX backend: an epoch's batches in compiled chunks, for one seed or several together.

Keras builds each model, draws its seeded initial weights, and supplies the layers, the
loss and the optimizer. This loop drives them through Keras's stateless API
(`stateless_call`, `stateless_apply`) inside `jax.lax.scan`, the way Keras's guide to
custom JAX loops does. The training images stay on the device as uint8, and each step
gathers its batch by index. Keras's own `fit` feeds every batch from NumPy through its data
adapter and unrolls a Python loop over the batches of a call. Measured side by side in
`make bench`, that cost 1.06-1.70x the bare `lax.scan` loop per epoch, and this loop 0.89-1.04x;
see docs/benchmarks.md.

Several members (the seeds of one variant) can train together under `jax.vmap`: stacked
weights, each member with its own shuffle, dropout and augmentation streams. A member's
updates are those it would get alone, because nothing is shared but the program. Whether
grouping pays depends on the device and the model's size (see `grouping_pays`).

An epoch is `steps` batches of `batch_size` indices into the training set. When the set is
not a whole number of batches, the last batch is padded with weight-0 examples, so the loss
and the gradient are those of the partial batch. Steps are run in chunks of at most
`config.steps_per_execution`; a chunk count that does not divide the steps is padded with
steps that `lax.cond` skips. Chunking sets how often progress is reported, not the arithmetic.
"""

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from denselab.data.dataset import NUM_CLASSES

# (epoch 1-based, batches done, batches per epoch, record or {}) -> None; see train.ProgressFn.
ProgressFn = Callable[[int, int, int, dict], None]


@dataclass
class Member:
    """One model in the loop: its training model (denselab.training.recipe), its built optimizer and its seed."""

    trainer: object = field(repr=False)
    optimizer: object = field(repr=False)
    seed: int
    on_progress: ProgressFn | None = None
    history_: list[dict] = field(default_factory=list)


# On a CPU, side by side pays only for the smallest models, whose steps are mostly fixed
# per-step cost that a group shares. Measured on this project's 2-core CPU, 3 seeds, s/epoch
# per seed (make bench, bench/seeds_together.py): Dense(20) 1.38-1.49x faster, Dense(32)
# 1.06x, Dense(40) 1.02x, Dense(128) 0.88x, Dense(512) 0.65x, 512 -> 512 0.56x: for larger
# models XLA's batched matrix products ran slower than one seed's products one at a time.
CPU_GROUP_MAX_MACS = 20_000


def grouping_pays(macs: int, device_platform: str | None = None) -> bool:
    """Whether training a variant's seeds side by side is faster than one after another, here.

    Args:
        macs: the model's multiply-accumulates per image (ModelSpec.macs).
        device_platform: "cpu", "gpu", ...; default: JAX's default backend.

    On an accelerator one small model's steps leave the device mostly idle, which is what
    a group fills; on a CPU see CPU_GROUP_MAX_MACS.
    """
    if device_platform is None:
        import jax

        device_platform = jax.default_backend()
    return device_platform != "cpu" or macs <= CPU_GROUP_MAX_MACS


@dataclass(frozen=True)
class Execution:
    """How a run was trained, which decides what its times can be compared with.

    A run trained side by side shares each epoch's time with the other seeds of its
    program, and such a program runs at another speed per seed than one seed alone (see
    CPU_GROUP_MAX_MACS): times measured in different modes, group sizes or devices are not
    comparable, even per seed.
    """

    mode: str  # "alone" or "side by side"
    seeds: int  # seeds in the program: 1 alone
    device: str  # JAX's platform ("cpu", "gpu", ...), or "<backend> backend" off JAX

    @classmethod
    def of(cls, together: bool, seeds: int, device: str) -> "Execution":
        return cls("side by side", seeds, device) if together and seeds > 1 else cls("alone", 1, device)

    @classmethod
    def from_dict(cls, stored: dict | None) -> "Execution | None":
        """A stored run's execution; None for runs stored before denselab recorded it."""
        return None if not stored else cls(stored["mode"], int(stored["seeds"]), stored["device"])

    @property
    def label(self) -> str:
        if self.mode == "alone":
            return f"alone on {self.device}"
        return f"side by side with {self.seeds} seeds on {self.device}"


def epoch_seconds(seconds: float, seeds_in_program: int) -> dict:
    """An epoch record's timing: `seconds` is the run's own share of the program's wall time.

    Side by side, one program trains every seed at once, so a seed's own work is the
    program's time divided by the seeds in it (stopped seeds still ride along, masked);
    `group_seconds` keeps the wall time that was measured.
    """
    if seeds_in_program == 1:
        return {"seconds": seconds}
    return {"seconds": seconds / seeds_in_program, "group_seconds": seconds}


def median_epoch_seconds(history: list[dict]) -> float:
    """A run's time per epoch: the median, leaving out the first epoch (it includes compilation) when others ran."""
    seconds = [record["seconds"] for record in history]
    return float(np.median(seconds[1:] or seconds))


def batch_plan(examples: int, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's shuffled batches: indices (steps, batch_size) and weights, 0 for padding."""
    steps = -(-examples // batch_size)
    order = np.zeros(steps * batch_size, np.int32)
    order[:examples] = rng.permutation(examples)
    weights = np.zeros(steps * batch_size, np.float32)
    weights[:examples] = 1.0
    return order.reshape(steps, batch_size), weights.reshape(steps, batch_size)


def chunking(steps: int, steps_per_execution: int) -> tuple[int, int]:
    """(chunks, steps per chunk): as few chunks as `steps_per_execution` allows, as even as possible."""
    chunks = -(-steps // steps_per_execution)
    return chunks, -(-steps // chunks)


def fit(members: list[Member], images: np.ndarray, labels: np.ndarray, config, divisor: float,
        together: bool, teacher_logits: np.ndarray | None = None) -> None:
    """Train `members` (same architecture and recipe, their own seeds) for `config.epochs`.

    Args:
        images: uint8 (or float) training images, N x 28 x 28; they are divided by `divisor`
            into the model's inputs on the device (255 for the exercise's normalization, as
            data.normalize does it).
        labels: integer class labels.
        config: the TrainConfig that all members share, apart from the seed.
        together: train all members side by side in one vmapped program; otherwise one
            after another, through the same compiled program.
        teacher_logits: a teacher's logits for each training image (N x 10), to distill
            from with `config.distill_temperature` and `config.distill_weight`; None trains on
            the labels alone.

    Each member's weights, its layers' random-generator states and its optimizer's
    variables are written back into its Keras objects; its per-epoch records are in
    `member.history_`. The exercise's callback (`config.stop_at_accuracy`) stops each
    member on its own; a stopped member's weights stay as they were at its stop.
    """
    import jax
    import jax.numpy as jnp

    # Traced once with the first member's Keras objects: the stateless calls read only their
    # structure, and every member brings its own values.
    distillation = None if teacher_logits is None else (config.distill_temperature, config.distill_weight)
    step = _single_step(members[0].trainer, members[0].optimizer, config.label_smoothing, divisor, distillation)
    if together:  # the data is shared; every member has its own state, batches and stop flag
        step = jax.vmap(step, in_axes=(0, None, None, 0, 0, 0))
    run_chunk = jax.jit(_chunk(step))
    # The targets travel as one tree: the labels, and the teacher's logits when there is one.
    targets = (jnp.asarray(labels.astype(np.int32)),
               None if teacher_logits is None else jnp.asarray(teacher_logits, jnp.float32))
    data = (jnp.asarray(images), targets)
    for group in [members] if together else [[member] for member in members]:
        _fit_group(group, run_chunk, data, config, together)


def _fit_group(members: list[Member], run_chunk, data, config, together: bool) -> None:
    """The epochs of one program run: all members side by side (together) or a single one."""
    import jax
    import jax.numpy as jnp

    state = _stack([_state_of(member) for member in members]) if together else _state_of(members[0])
    examples = len(data[1][0])
    rngs = [np.random.default_rng(member.seed) for member in members]
    steps = -(-examples // config.batch_size)
    chunks, chunk_steps = chunking(steps, config.steps_per_execution)
    training = np.ones(len(members), bool)
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        _report(members, training, epoch, 0, steps, {})
        plans = [batch_plan(examples, config.batch_size, rng) for rng in rngs]
        indices, weights = _padded(plans, chunks * chunk_steps, together)
        loss_sum, correct = np.zeros(len(members)), np.zeros(len(members))
        for chunk in range(chunks):
            window = slice(chunk * chunk_steps, (chunk + 1) * chunk_steps)
            active = np.arange(window.start, window.stop) < steps
            keep = jnp.asarray(training) if together else None
            state, (losses, hits) = run_chunk(state, *data, indices[..., window, :], weights[..., window, :],
                                              jnp.asarray(active), keep)
            loss_sum += np.asarray(losses, np.float64).reshape(-1)
            correct += np.asarray(hits, np.float64).reshape(-1)
            _report(members, training, epoch, min(window.stop, steps), steps, {})
        seconds = time.perf_counter() - started
        for position, member in enumerate(members):
            if not training[position]:
                continue
            record = {"epoch": epoch, "loss": float(loss_sum[position] / examples),
                      "accuracy": float(correct[position] / examples), **epoch_seconds(seconds, len(members))}
            member.history_.append(record)
            if member.on_progress:
                member.on_progress(epoch, steps, steps, record)
            if (config.stop_at_accuracy is not None and epoch >= config.min_epochs
                    and record["accuracy"] > config.stop_at_accuracy):
                training[position] = False
        if not training.any():
            break
    for position, member in enumerate(members):
        _write_back(member, jax.tree.map(lambda value: value[position], state) if together else state)


def _state_of(member: Member):
    """What the loop carries for one member: (trainable, non-trainable, optimizer) values."""
    return ([variable.value for variable in member.trainer.trainable_variables],
            [variable.value for variable in member.trainer.non_trainable_variables],
            [variable.value for variable in member.optimizer.variables])


def _stack(states):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda *values: jnp.stack(values), *states)


def _write_back(member: Member, state) -> None:
    trainable, non_trainable, optimizer = state
    for variables, values in ((member.trainer.trainable_variables, trainable),
                              (member.trainer.non_trainable_variables, non_trainable),
                              (member.optimizer.variables, optimizer)):
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)


def _padded(plans, total_steps: int, together: bool):
    """Stack members' plans and pad them to `total_steps` (the padding steps are skipped)."""
    import jax.numpy as jnp

    indices = np.stack([plan[0] for plan in plans])
    weights = np.stack([plan[1] for plan in plans])
    extra = total_steps - indices.shape[1]
    indices = np.pad(indices, ((0, 0), (0, extra), (0, 0)))
    weights = np.pad(weights, ((0, 0), (0, extra), (0, 0)))
    if not together:
        indices, weights = indices[0], weights[0]
    return jnp.asarray(indices), jnp.asarray(weights)


def _report(members, training, epoch: int, done: int, steps: int, record: dict) -> None:
    for position, member in enumerate(members):
        if training[position] and member.on_progress:
            member.on_progress(epoch, done, steps, record)


def _single_step(trainer, optimizer, label_smoothing: float, divisor: float,
                 distillation: tuple[float, float] | None = None):
    """One member's training step: (state, data, batch indices, weights, keep) -> (state, (loss sum, correct)).

    With `distillation` (temperature T, weight a), each example's loss is (1 - a) times the
    cross-entropy with the labels plus a * T^2 * KL(teacher_T || student_T), the softened
    distributions at T; T^2 keeps the soft term's gradients at the scale of the hard
    term's as T changes (Hinton, Vinyals & Dean 2015). At a = 0 it is the plain loss.

    The training data are arguments, not constants of the program: a closed-over array
    would be embedded in the compiled program, which made compilation 4x slower (measured)
    and put the data into every entry of the compilation cache.
    """
    import jax
    import jax.numpy as jnp
    import keras

    def batch_loss(trainable, non_trainable, images, targets, weights):
        labels, teacher_logits = targets
        logits, non_trainable = trainer.stateless_call(trainable, non_trainable, images, training=True)
        if label_smoothing > 0:
            per_example = keras.losses.categorical_crossentropy(
                jax.nn.one_hot(labels, NUM_CLASSES), logits, from_logits=True, label_smoothing=label_smoothing)
        else:
            per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        if distillation is not None:
            temperature, weight = distillation
            teacher_log_p = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
            student_log_p = jax.nn.log_softmax(logits / temperature, axis=-1)
            divergence = jnp.sum(jnp.exp(teacher_log_p) * (teacher_log_p - student_log_p), axis=-1)
            per_example = (1 - weight) * per_example + weight * temperature ** 2 * divergence
        loss_sum = jnp.sum(per_example * weights)
        correct = jnp.sum((jnp.argmax(logits, axis=-1) == labels) * weights)
        # The mean over the batch's real examples: a partial last batch is averaged over its own size.
        return loss_sum / jnp.sum(weights), (non_trainable, loss_sum, correct)

    def step(state, inputs, targets, indices, weights, keep):
        trainable, non_trainable, optimizer_values = state
        images = inputs[indices].astype(jnp.float32)
        if divisor != 1:
            images = images / np.float32(divisor)
        batch_targets = jax.tree.map(lambda values: values[indices], targets)
        (_, (new_non_trainable, loss_sum, correct)), grads = jax.value_and_grad(batch_loss, has_aux=True)(
            trainable, non_trainable, images, batch_targets, weights)
        new_trainable, new_optimizer = optimizer.stateless_apply(optimizer_values, grads, trainable)
        new_state = (new_trainable, new_non_trainable, new_optimizer)
        if keep is not None:  # grouped: a member that has stopped keeps its state
            new_state = jax.tree.map(lambda new, old: jnp.where(keep, new, old), new_state, state)
        return new_state, (loss_sum, correct)

    return step


def _chunk(step):
    """Run `step` over a chunk of batches with lax.scan; padding steps (active False) are skipped."""
    import jax

    def run(state, inputs, targets, indices, weights, active, keep):
        def body(state, batch):
            batch_indices, batch_weights, is_active = batch

            def skip(state):
                zero = jax.numpy.zeros(() if keep is None else keep.shape, jax.numpy.float32)
                return state, (zero, zero)

            return jax.lax.cond(is_active, lambda s: step(s, inputs, targets, batch_indices, batch_weights, keep),
                                skip, state)

        # Grouped inputs are (members, steps, ...): scan walks the steps axis.
        if keep is not None:
            indices, weights = jax.numpy.swapaxes(indices, 0, 1), jax.numpy.swapaxes(weights, 0, 1)
        state, (losses, hits) = jax.lax.scan(body, state, (indices, weights, active))
        return state, (losses.sum(axis=0), hits.sum(axis=0))

    return run
