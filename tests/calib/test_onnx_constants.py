"""calib/onnx_constants.py: each foldable ONNX op, evaluated on constants, equals onnx's own reference
evaluator (``onnx.reference.ReferenceEvaluator``) exactly — values, shape and dtype."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from calib.onnx_constants import FOLDABLE, fold_constant  # noqa: E402

I64 = np.int64
CASES = [
    ("ConstantOfShape", [np.array([2, 3], I64)], {"value": numpy_helper.from_array(np.array([0], I64))}),
    ("ConstantOfShape", [np.array([4], I64)], {}),
    ("Concat", [np.array([1, 2], I64), np.array([0, 0, 0], I64)], {"axis": 0}),
    ("Reshape", [np.arange(8, dtype=I64), np.array([-1, 2], I64)], {}),
    ("Reshape", [np.arange(12, dtype=I64).reshape(3, 4), np.array([0, 2, 2], I64)], {}),
    ("Slice", [np.arange(8, dtype=I64).reshape(4, 2), np.array([-1], I64), np.array([-9223372036854775807], I64),
               np.array([0], I64), np.array([-1], I64)], {}),  # the exporter's reversal of the pad pairs
    ("Slice", [np.arange(10, dtype=I64), np.array([2], I64), np.array([9223372036854775807], I64)], {}),
    ("Slice", [np.arange(24, dtype=I64).reshape(4, 6), np.array([1, -4], I64), np.array([3, 100], I64),
               np.array([0, 1], I64), np.array([1, 2], I64)], {}),
    ("Transpose", [np.arange(6, dtype=I64).reshape(3, 2)], {"perm": [1, 0]}),
    ("Cast", [np.array([1, -2, 3], I64)], {"to": TensorProto.FLOAT}),
    ("Cast", [np.array([1.5, -2.5], np.float32)], {"to": TensorProto.INT64}),
    ("Unsqueeze", [np.array([3, 4], I64), np.array([0, -1], I64)], {}),
    ("Squeeze", [np.zeros((1, 3, 1), np.float32), np.array([0], I64)], {}),
    ("Squeeze", [np.zeros((1, 3, 1), np.float32)], {}),
    ("Identity", [np.array([7.25], np.float32)], {}),
    ("Gather", [np.array([1, 3, 40, 50], I64), np.array(2, I64)], {"axis": 0}),
    ("Gather", [np.arange(12, dtype=I64).reshape(3, 4), np.array([2, 0], I64)], {"axis": 1}),
]


def _reference(op: str, inputs: list, attrs: dict) -> np.ndarray:
    names = [f"i{k}" for k in range(len(inputs))]
    node = helper.make_node(op, names, ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype),
                                                                          v.shape) for n, v in zip(names, inputs)],
                              [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))[0]


@pytest.mark.parametrize("op, inputs, attrs", CASES, ids=[f"{c[0]}{k}" for k, c in enumerate(CASES)])
def test_fold_equals_the_onnx_reference(op, inputs, attrs):
    want = _reference(op, inputs, attrs)
    got = fold_constant(op, {k: (helper.get_attribute_value(helper.make_attribute(k, v))) for k, v in attrs.items()},
                        list(inputs))
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), (got, want)


def test_every_foldable_op_is_covered_and_others_refused():
    assert {c[0] for c in CASES} == set(FOLDABLE)
    with pytest.raises(ValueError, match="no constant evaluation of ONNX op Add"):
        fold_constant("Add", {}, [np.ones(1), np.ones(1)])
