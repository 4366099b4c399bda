"""About the fastest this machine trains these models: a minimal pure-JAX loop.

`jax.lax.scan` runs every batch of an epoch inside one compiled call; the update is
Keras's Adam (lr 1e-3, beta 0.9/0.999, epsilon 1e-7), batch 32, Glorot-uniform
initialization, a fresh shuffle each epoch. Nothing else: no callbacks, no metrics
during training. Run in its own process by bench/run.py; prints one JSON object.
"""

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench_common import epoch_seconds_summary, load_arrays, peak_memory_mb

LEARNING_RATE, BETA_1, BETA_2, EPSILON, BATCH = 1e-3, 0.9, 0.999, 1e-7, 32


def init(key, sizes):
    params = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        key, sub = jax.random.split(key)
        limit = np.sqrt(6 / (fan_in + fan_out))
        params.append((jax.random.uniform(sub, (fan_in, fan_out), jnp.float32, -limit, limit), jnp.zeros(fan_out)))
    return params


def logits(params, x):
    for kernel, bias in params[:-1]:
        x = jax.nn.relu(x @ kernel + bias)
    kernel, bias = params[-1]
    return x @ kernel + bias


def loss(params, x, y):
    return -jnp.take_along_axis(jax.nn.log_softmax(logits(params, x)), y[:, None], axis=1).mean()


@jax.jit
def train_epoch(params, m, v, t, x, y, batch_indices):
    """One epoch: the data stays on the device; each step gathers its batch by index."""

    def step(carry, indices):
        params, m, v, t = carry
        value, grads = jax.value_and_grad(loss)(params, x[indices], y[indices])
        t = t + 1
        alpha = LEARNING_RATE * jnp.sqrt(1 - BETA_2 ** t) / (1 - BETA_1 ** t)
        m = jax.tree.map(lambda m, g: m + (g - m) * (1 - BETA_1), m, grads)
        v = jax.tree.map(lambda v, g: v + (g * g - v) * (1 - BETA_2), v, grads)
        params = jax.tree.map(lambda p, m, v: p - alpha * m / (jnp.sqrt(v) + EPSILON), params, m, v)
        return (params, m, v, t), value

    (params, m, v, t), losses = jax.lax.scan(step, (params, m, v, t), batch_indices)
    return params, m, v, t, losses.mean()


def matmul_gflops(size: int = 1024, repeats: int = 20) -> float:
    """This machine's float32 matrix-multiply rate through XLA, in GFLOP/s."""
    a = jnp.ones((size, size), jnp.float32)
    product = jax.jit(lambda a: a @ a)
    product(a).block_until_ready()
    started = time.perf_counter()
    for _ in range(repeats):
        product(a).block_until_ready()
    return 2 * size ** 3 * repeats / (time.perf_counter() - started) / 1e9


def main(hidden: list[int], epochs: int) -> dict:
    (train_images, train_labels), (test_images, test_labels) = load_arrays()
    x = jnp.asarray(train_images.reshape(-1, 784) / np.float32(255), dtype=jnp.float32)
    y = jnp.asarray(train_labels.astype(np.int32))
    params = init(jax.random.key(0), [784, *hidden, 10])
    m = jax.tree.map(jnp.zeros_like, params)
    v = jax.tree.map(jnp.zeros_like, params)
    t = jnp.zeros((), jnp.float32)
    rng = np.random.default_rng(0)
    steps = len(y) // BATCH
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        batch_indices = jnp.asarray(rng.permutation(len(y))[: steps * BATCH].reshape(steps, BATCH))
        params, m, v, t, _ = train_epoch(params, m, v, t, x, y, batch_indices)
        jax.block_until_ready(params)
        seconds.append(time.perf_counter() - started)
    test_x = jnp.asarray(test_images.reshape(-1, 784) / np.float32(255))
    accuracy = float((logits(params, test_x).argmax(axis=1) == jnp.asarray(test_labels)).mean())
    return {"hidden": hidden, "test_accuracy": accuracy, **epoch_seconds_summary(seconds)}


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    result = main(arguments["hidden"], arguments["epochs"])
    result["matmul_gflops"] = matmul_gflops()
    result["device"] = str(jax.devices()[0])
    result["peak_memory_mb"] = peak_memory_mb()
    print(json.dumps(result))
