"""The exercise's own code, as written: tf.keras, model.fit and model.predict with their defaults.

Run in its own process by bench/run.py; prints one JSON object. Only two things are
added to the exercise: a callback that times each epoch, and the data, which comes
from denselab's IDX loader because this machine cannot download it.
"""

import time

SCRIPT_STARTED = time.perf_counter()  # before the imports: the script's whole cost counts

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

os.environ["KERAS_BACKEND"] = "tensorflow"  # tf.keras is Keras on TensorFlow, whatever the shell says

import tensorflow as tf  # noqa: E402

from bench_common import epoch_seconds_summary, load_arrays, peak_memory_mb, predict_latency  # noqa: E402


class EpochTimer(tf.keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def exercise(hidden: list[int], epochs: int, latency_calls: int) -> dict:
    (training_images, training_labels), (test_images, test_labels) = load_arrays()
    training_images = training_images / 255.0
    test_images = test_images / 255.0
    model = tf.keras.models.Sequential(
        [tf.keras.layers.Flatten()]
        + [tf.keras.layers.Dense(units, activation=tf.nn.relu) for units in hidden]
        + [tf.keras.layers.Dense(10, activation=tf.nn.softmax)]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    model.fit(training_images, training_labels, epochs=epochs, callbacks=[timer], verbose=0)
    _, test_accuracy = model.evaluate(test_images, test_labels, verbose=0)
    started = time.perf_counter()
    classifications = model.predict(test_images, verbose=0)
    predict_all = time.perf_counter() - started
    result = {
        "hidden": hidden, "test_accuracy": float(test_accuracy), **epoch_seconds_summary(timer.seconds),
        "predict_10000_seconds": predict_all, "first_prediction": classifications[0].tolist(),
        # The exercise as a script, from the first import to print(classifications[0]).
        "script_seconds": time.perf_counter() - SCRIPT_STARTED,
    }
    if latency_calls:
        one = test_images[:1]
        result["single_predict_seconds"] = predict_latency(lambda: model.predict(one, verbose=0), latency_calls)
    return result


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    result = exercise(arguments["hidden"], arguments["epochs"], arguments["latency_calls"])
    result["peak_memory_mb"] = peak_memory_mb()
    print(json.dumps(result))
