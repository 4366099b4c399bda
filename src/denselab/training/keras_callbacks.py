"""The Keras callbacks of training with Keras's fit, on backends other than JAX.

On JAX, denselab.training.loop trains and applies the exercise's early stop itself; these give the
same behaviour to Keras's fit: the exercise's callback, and a recorder of each epoch's loss,
accuracy and wall time that reports progress as denselab.training.loop does (train.ProgressFn).
"""

import time


def accuracy_threshold_stop(threshold: float, min_epochs: int = 2):
    """The exercise's callback: stop once training accuracy exceeds `threshold`, not before `min_epochs`.

    The exercise stops "once accuracy passes 0.86 but not before epoch 2": a first epoch
    that is already above the threshold does not end training.
    """
    import keras

    class AccuracyThresholdStop(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.threshold, self.min_epochs = threshold, min_epochs
            self.stopped_epoch_ = None

        def on_epoch_end(self, epoch, logs=None):
            epochs_done = epoch + 1
            if epochs_done >= self.min_epochs and (logs or {}).get("accuracy", 0.0) > self.threshold:
                self.stopped_epoch_ = epochs_done
                self.model.stop_training = True

    return AccuracyThresholdStop()




def epoch_recorder(history: list, steps_per_epoch: int, on_progress=None):
    """A callback that records loss, accuracy and wall time per epoch and reports progress."""
    import keras

    class EpochRecorder(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            # Keras passes on_train_batch_end no epoch number; keep it here.
            self.current_epoch = epoch + 1
            self.started = time.perf_counter()
            if on_progress:
                on_progress(self.current_epoch, 0, steps_per_epoch, {})

        def on_train_batch_end(self, batch, logs=None):
            if on_progress:
                on_progress(self.current_epoch, batch + 1, steps_per_epoch, {})

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.started
            record = {"epoch": epoch + 1, "loss": float(logs["loss"]), "accuracy": float(logs["accuracy"]), "seconds": seconds}
            history.append(record)
            if on_progress:
                on_progress(epoch + 1, steps_per_epoch, steps_per_epoch, record)

    return EpochRecorder()
