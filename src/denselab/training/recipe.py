"""How a model's weights are found: the training-only choices around the deployed graph.

The model that is saved, exported and served is always the exercise's family, Flatten ->
Dense ... -> Dense(10, softmax). Training wraps its Dense layers (the same layer objects,
so the same weights) in a training model that may add augmentation, standardization and
dropout, and ends in logits: the softmax is folded into the loss. After training,
standardization is folded into the first Dense layer, and nothing else remains of the
recipe. See TrainConfig for the choices and their defaults, which are the exercise's.
"""

import numpy as np

from denselab.data.dataset import IMAGE_SIDE

SHIFT_PIXELS = 2  # "shift" moves each training image by up to this many pixels each way


def training_model(model, config, mean: float, std: float):
    """A Keras model sharing `model`'s Dense layers, with the recipe's training-only layers, ending in logits.

    Args:
        model: the deployable model (build_model); its last layer's activation must be
            linear while the training model trains (see `logits_of`).
        mean, std: the training inputs' mean and standard deviation, used when
            `config.standardize`.
    """
    import keras

    inputs = keras.Input(shape=(IMAGE_SIDE, IMAGE_SIDE))
    x = inputs
    if config.augment != "none":
        x = keras.layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1))(x)
        if "flip" in config.augment:
            x = keras.layers.RandomFlip("horizontal", seed=config.seed)(x)
        if "shift" in config.augment:
            factor = SHIFT_PIXELS / IMAGE_SIDE
            x = keras.layers.RandomTranslation(factor, factor, fill_mode="constant", fill_value=0.0,
                                               interpolation="nearest", seed=config.seed)(x)
        x = keras.layers.Reshape((IMAGE_SIDE, IMAGE_SIDE))(x)
    x = keras.layers.Flatten()(x)
    if config.standardize:
        x = keras.layers.Rescaling(1.0 / std, offset=-mean / std)(x)
    if config.dropout_input:
        x = keras.layers.Dropout(config.dropout_input, seed=config.seed)(x)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    for layer in dense[:-1]:
        x = layer(x)
        if config.dropout_hidden:
            x = keras.layers.Dropout(config.dropout_hidden, seed=config.seed)(x)
    return keras.Model(inputs, dense[-1](x), name=f"{model.name}_training")


def optimizer(config, steps_per_epoch: int):
    """Adam as in the exercise, or AdamW with weight decay; a constant or cosine learning rate."""
    import keras

    learning_rate = config.learning_rate
    if config.schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=config.epochs * steps_per_epoch)
    if config.weight_decay > 0:
        return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def loss_and_labels(config, labels: np.ndarray, num_classes: int):
    """The from-logits cross-entropy and the labels it takes: one-hot when labels are smoothed."""
    import keras

    if config.label_smoothing > 0:
        one_hot = np.eye(num_classes, dtype=np.float32)[labels]
        return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing), one_hot
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True), labels.astype("int32")


def fold_standardization(model, mean: float, std: float) -> None:
    """Fold x -> (x - mean) / std into the first Dense layer, so the model takes unstandardized inputs.

    (x - m) / s @ W + b equals x @ (W / s) + (b - (m / s) * sum over inputs of W).
    """
    import keras

    first = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dense))
    kernel, bias = first.get_weights()
    first.set_weights([kernel / std, bias - (mean / std) * kernel.sum(axis=0)])


def input_statistics(inputs: np.ndarray) -> tuple[float, float]:
    """The mean and standard deviation of all training input values, for standardization."""
    return float(inputs.mean(dtype=np.float64)), float(inputs.std(dtype=np.float64))
