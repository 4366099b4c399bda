"""What a trial may choose: the deployed architecture, and how it is trained.

Every model a trial proposes deploys as the exercise's family, Flatten -> Dense ... ->
Dense(10, softmax), as int8 FULLY_CONNECTED and SOFTMAX ops. The hidden activation is
searched among those that TensorFlow Lite fuses into FULLY_CONNECTED: of denselab's
activations that is relu alone (tanh, sigmoid, elu, selu and silu would each add ops).
Everything else a trial chooses only changes training (denselab.training.recipe).
"""

from denselab.data.dataset import DEFAULT_DATASET
from denselab.model.spec import ModelSpec
from denselab.study.file import Variant
from denselab.training.config import TrainConfig

# Bump when the space changes: a search's journal records it, and a journal of another
# space is refused rather than mixed with this one.
SPACE_VERSION = 1
LAYERS = (1, 4)
WIDTHS = (16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
FUSED_ACTIVATIONS = ("relu",)
BATCH_SIZES = (64, 128, 256)
AUGMENTATIONS = ("none", "flip")  # ±2 px shifts hurt these MLPs in the probe; flips did not help much either


# Proposed first, before the sampler's own choices: the recipe of the probe, which
# reached 0.9052 (768 -> 256) and 0.8978 (256) in float after 60 epochs of a bare JAX loop
# (dropout 0.1 on the input and 0.3 on hidden layers, label smoothing 0.1, AdamW with weight
# decay 5e-5, a cosine schedule, batch 128; Adam's default learning rate). A short search then
# starts from a known good recipe; it is compared on the validation split like any other
# trial, and one that does not fit the board is refused before it trains.
PROBE_RECIPE = {"activation": "relu", "learning_rate": 1e-3, "schedule": "cosine", "batch_size": 128,
                "dropout_input": 0.1, "dropout_hidden": 0.3, "weight_decay": 5e-5, "label_smoothing": 0.1,
                "augment": "none", "standardize": False}
STARTING_POINTS = (
    {"layers": 2, "width_1": 768, "width_2": 256, **PROBE_RECIPE},
    {"layers": 1, "width_1": 256, **PROBE_RECIPE},
)


def hidden_units(params: dict) -> tuple[int, ...]:
    return tuple(params[f"width_{index + 1}"] for index in range(params["layers"]))


def sample_architecture(trial) -> tuple[int, ...]:
    """Ask the trial for the deployed part first, so a model that cannot fit is refused before the rest."""
    layers = trial.suggest_int("layers", *LAYERS)
    for index in range(layers):
        trial.suggest_categorical(f"width_{index + 1}", WIDTHS)
    trial.suggest_categorical("activation", FUSED_ACTIVATIONS)
    return hidden_units(trial.params)


def sample_training(trial) -> None:
    """The training-only choices; they leave the deployed graph unchanged."""
    trial.suggest_float("learning_rate", 3e-4, 3e-3, log=True)
    trial.suggest_categorical("schedule", ("constant", "cosine"))
    trial.suggest_categorical("batch_size", BATCH_SIZES)
    trial.suggest_float("dropout_input", 0.0, 0.3)
    trial.suggest_float("dropout_hidden", 0.0, 0.5)
    trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True)
    trial.suggest_float("label_smoothing", 0.0, 0.2)
    trial.suggest_categorical("augment", AUGMENTATIONS)
    trial.suggest_categorical("standardize", (False, True))


def variant_of(params: dict, epochs: int, name: str, distillation: dict | None = None,
               dataset: str = DEFAULT_DATASET) -> Variant:
    """The run-engine variant of a trial's parameters trained for `epochs` epochs.

    `distillation` holds the search's teacher settings (SearchSettings.distillation): T and
    its weight stay at TrainConfig's measured defaults rather than being searched.
    """
    spec = ModelSpec(hidden_units(params), params["activation"])
    config = TrainConfig(
        epochs=epochs, batch_size=params["batch_size"], learning_rate=params["learning_rate"],
        schedule=params["schedule"], dropout_input=params["dropout_input"], dropout_hidden=params["dropout_hidden"],
        weight_decay=params["weight_decay"], label_smoothing=params["label_smoothing"], augment=params["augment"],
        standardize=params["standardize"], **(distillation or {}),
    )
    return Variant(name, f"search trial {name}", dataset, spec, config)


def smallest_architecture() -> tuple[int, ...]:
    return (WIDTHS[0],)
