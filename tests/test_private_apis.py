"""Guards for the private or unsupported APIs of other libraries that denselab relies on.

Each of these can change in any release without a deprecation. When one does, the test here
fails first, naming the denselab file that needs a new way, instead of a deep failure (or a
silently wrong figure) somewhere in export, training or the Ray executor.
"""

import importlib
import inspect
import subprocess
import sys

import numpy as np
import pytest

from denselab.deploy.c_runtime import quantized


def relied_on(what: str, by: str) -> str:
    return f"{what}: changed or gone in this version; denselab relies on it in {by}"


def reach(module: str, *names: str, users: str):
    """The module, after checking it has `names`; a failure naming `users` where it or a name is gone."""
    try:
        found = importlib.import_module(module)
    except ImportError as error:
        pytest.fail(relied_on(f"the module {module} ({error})", users))
    missing = [name for name in names if not hasattr(found, name)]
    if missing:
        pytest.fail(relied_on(f"{module}'s {', '.join(missing)}", users))
    return found


@pytest.fixture(scope="module")
def int8_bytes(tanh_int8_model) -> bytes:
    """An int8 model of FULLY_CONNECTED, TANH and SOFTMAX ops (conftest's)."""
    return tanh_int8_model.read_bytes()


# --- LiteRT -------------------------------------------------------------------------------

def test_litert_get_ops_details_gives_each_op_name(int8_bytes):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    users = "src/denselab/deploy/tflite.py (op_names) and src/denselab/deploy/tflm.py (arena_for_shapes)"
    assert callable(getattr(Interpreter, "_get_ops_details", None)), \
        relied_on("LiteRT's Interpreter._get_ops_details", users)
    interpreter = Interpreter(model_content=int8_bytes,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    ops = interpreter._get_ops_details()
    assert isinstance(ops, list) and ops, relied_on("_get_ops_details() returning a list of ops", users)
    assert all(isinstance(op, dict) and isinstance(op.get("op_name"), str) for op in ops), \
        relied_on(f"_get_ops_details()'s dicts with an 'op_name' string (got {ops[0]!r})", users)
    names = {op["op_name"] for op in ops}
    assert {"FULLY_CONNECTED", "TANH", "SOFTMAX"} <= names and "DELEGATE" not in names, \
        relied_on(f"the op names _get_ops_details() gives (got {sorted(names)})", users)


# --- tflite-micro -------------------------------------------------------------------------

def test_tflm_from_bytes_takes_the_arena_size_and_the_misspelt_config_keyword(int8_bytes):
    import tflite_micro

    users = "src/denselab/deploy/tflm.py (arena_size=) and src/denselab/deploy/c_runtime/host_check.py " \
            "(intrepreter_config=, sic)"
    parameters = inspect.signature(tflite_micro.runtime.Interpreter.from_bytes).parameters
    for keyword in ("arena_size", "intrepreter_config"):
        assert keyword in parameters, relied_on(f"tflite_micro.runtime.Interpreter.from_bytes's {keyword}=", users)
    assert hasattr(tflite_micro.runtime.InterpreterConfig, "kPreserveAllTensors"), \
        relied_on("tflite_micro.runtime.InterpreterConfig.kPreserveAllTensors", users)
    interpreter = tflite_micro.runtime.Interpreter.from_bytes(int8_bytes, arena_size=64 * 1024)
    shape = tuple(interpreter.get_input_details(0)["shape"])
    interpreter.set_input(np.zeros(shape, np.int8), 0)
    interpreter.invoke()
    assert np.asarray(interpreter.get_output(0)).size == 10, relied_on("TFLM's get_output(0)", users)


def test_tflm_get_tensor_reads_a_layers_output_with_all_tensors_preserved(int8_bytes):
    import tflite_micro

    users = "src/denselab/deploy/c_runtime/host_check.py (first_difference)"
    runtime = reach("tflite_micro.python.tflite_micro.runtime", "convert_bytearray_to_object", users=users)
    convert_bytearray_to_object = runtime.convert_bytearray_to_object
    model = convert_bytearray_to_object(bytearray(int8_bytes))
    graph = model.subgraphs[0]
    dense = next(op for op in graph.operators  # the 16-wide hidden layer
                 if model.operatorCodes[op.opcodeIndex].builtinCode == quantized.FULLY_CONNECTED)
    interpreter = tflite_micro.runtime.Interpreter.from_bytes(
        int8_bytes, intrepreter_config=tflite_micro.runtime.InterpreterConfig.kPreserveAllTensors)
    assert callable(getattr(interpreter, "GetTensor", None)), relied_on("TFLM's Interpreter.GetTensor", users)
    interpreter.set_input(np.full(tuple(interpreter.get_input_details(0)["shape"]), 7, np.int8), 0)
    interpreter.invoke()
    first_layer = interpreter.GetTensor(int(dense.outputs[0]), 0)
    assert isinstance(first_layer, dict) and "tensor_data" in first_layer, \
        relied_on("GetTensor(index, subgraph) returning a dict with 'tensor_data'", users)
    assert np.asarray(first_layer["tensor_data"]).size == 16, relied_on("GetTensor's 'tensor_data'", users)
    output = interpreter.GetTensor(int(graph.outputs[0]), 0)["tensor_data"]
    assert np.array_equal(np.asarray(output).reshape(-1), np.asarray(interpreter.get_output(0)).reshape(-1)), \
        relied_on("GetTensor reading the tensors an invoke wrote (kPreserveAllTensors)", users)


def test_tflm_flatbuffer_reader_at_its_unsupported_path_gives_what_the_c_runtime_reads(int8_bytes):
    users = "src/denselab/deploy/c_runtime/quantized.py (read_quantized_classifier, _op_name)"
    # tflite_micro/__init__.py calls any module outside its public aliases unsupported.
    runtime = reach("tflite_micro.python.tflite_micro.runtime", "convert_bytearray_to_object", "schema_fb",
                    users=users)
    convert_bytearray_to_object, schema_fb = runtime.convert_bytearray_to_object, runtime.schema_fb
    model = convert_bytearray_to_object(bytearray(int8_bytes))
    graph = model.subgraphs[0]
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in model.operatorCodes]
    operators = [(codes[op.opcodeIndex], op) for op in graph.operators]
    assert [code for code, _ in operators].count(quantized.FULLY_CONNECTED) == 2, \
        relied_on("the model object's operatorCodes/opcodeIndex", users)
    for name, value in (("FULLY_CONNECTED", quantized.FULLY_CONNECTED), ("SOFTMAX", quantized.SOFTMAX),
                        ("RESHAPE", quantized.RESHAPE), ("QUANTIZE", quantized.QUANTIZE)):
        assert getattr(schema_fb.BuiltinOperator, name, None) == value, \
            relied_on(f"schema_fb.BuiltinOperator.{name}", users)
    assert (schema_fb.TensorType.FLOAT32, schema_fb.TensorType.INT32, schema_fb.TensorType.INT8) == \
        (quantized.FLOAT32, quantized.INT32, quantized.INT8), relied_on("schema_fb.TensorType", users)
    dense = next(op for code, op in operators if code == quantized.FULLY_CONNECTED)
    softmax = next(op for code, op in operators if code == quantized.SOFTMAX)
    weights = graph.tensors[dense.inputs[1]]
    assert weights.type == quantized.INT8 and len(weights.quantization.scale) >= 1 \
        and len(weights.quantization.zeroPoint) >= 1, relied_on("a tensor's type and quantization", users)
    data = np.asarray(model.buffers[weights.buffer].data, np.uint8)
    assert data.size == int(np.prod(weights.shape)), relied_on("model.buffers[tensor.buffer].data", users)
    assert dense.builtinOptions.fusedActivationFunction in (quantized.ACTIVATION_NONE, quantized.ACTIVATION_RELU), \
        relied_on("FULLY_CONNECTED's builtinOptions.fusedActivationFunction", users)
    assert softmax.builtinOptions.beta == 1.0, relied_on("SOFTMAX's builtinOptions.beta", users)
    assert len(graph.inputs) == len(graph.outputs) == 1 and len(dense.outputs) == 1, \
        relied_on("the subgraph's inputs and outputs", users)


# --- Ray ----------------------------------------------------------------------------------

def test_ray_init_takes_node_ip_address_through_its_hidden_keywords():
    import ray

    users = "src/denselab/runs/executors.py (RayExecutor._init_options)"
    parameters = inspect.signature(ray.init).parameters
    named = "_node_ip_address" in parameters
    assert named or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()), \
        relied_on("ray.init's _node_ip_address= (neither a parameter nor **kwargs)", users)
    if named:
        return
    # ray.init pops the hidden options it knows from **kwargs and refuses what is left before
    # it starts anything; in a child process, as it also installs a SIGTERM handler.
    probe = ("import ray\nray.init(address='local', configure_logging=False, include_dashboard=False, "
             "_node_ip_address='127.0.0.1', _denselab_probe=1)\nray.shutdown()")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    refused = [line for line in result.stderr.splitlines() if "Unknown keyword argument" in line]
    assert result.returncode != 0 and refused and "_denselab_probe" in refused[-1], \
        relied_on(f"ray.init refusing unknown hidden keywords (stderr: {result.stderr[-2000:]})", users)
    assert "_node_ip_address" not in refused[-1], relied_on("ray.init's hidden _node_ip_address=", users)


# --- Keras --------------------------------------------------------------------------------

def test_keras_seed_globals_are_the_ones_its_generators_read():
    import keras

    from denselab.training.fit import seed_everything

    users = "src/denselab/training/fit.py (seed_everything)"
    global_state = reach("keras.src.backend.common.global_state", "set_global_attribute", "get_global_attribute",
                         users=users)
    seed_generator = reach("keras.src.random.seed_generator", "GLOBAL_SEED_GENERATOR", "SeedGenerator", users=users)
    rng_utils = reach("keras.src.utils.rng_utils", "GLOBAL_RANDOM_SEED", "get_random_seed", users=users)
    assert list(inspect.signature(global_state.set_global_attribute).parameters) == ["name", "value"], \
        relied_on("keras.src.backend.common.global_state.set_global_attribute(name, value)", users)
    assert isinstance(rng_utils.GLOBAL_RANDOM_SEED, str) and isinstance(seed_generator.GLOBAL_SEED_GENERATOR, str), \
        relied_on("rng_utils.GLOBAL_RANDOM_SEED or seed_generator.GLOBAL_SEED_GENERATOR", users)
    seed_everything(3)
    assert rng_utils.get_random_seed() == 3, relied_on("Keras's seed under rng_utils.GLOBAL_RANDOM_SEED", users)
    first = keras.ops.convert_to_numpy(keras.random.normal((8,)))
    assert isinstance(global_state.get_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR),
                      seed_generator.SeedGenerator), \
        relied_on("Keras's global generator under seed_generator.GLOBAL_SEED_GENERATOR", users)
    seed_everything(3)
    again = keras.ops.convert_to_numpy(keras.random.normal((8,)))
    assert np.array_equal(first, again), relied_on("what reseeding Keras's unseeded random ops resets", users)


def test_keras_lazy_tensorflow_module_answers_from_available():
    users = "src/denselab/model/spec.py (the lazy tensorflow module's _available)"
    module_utils = reach("keras.src.utils.module_utils", "tensorflow", "LazyModule", users=users)
    lazy = module_utils.tensorflow
    assert isinstance(lazy, module_utils.LazyModule) and "module" in vars(lazy) and "_available" in vars(lazy), \
        relied_on("keras.src.utils.module_utils.tensorflow's module and _available", users)
    fresh = module_utils.LazyModule("json")  # importable: answering True would mean _available was ignored
    fresh._available = False
    assert fresh.available is False and fresh.module is None, \
        relied_on("LazyModule.available answering from _available without importing", users)
