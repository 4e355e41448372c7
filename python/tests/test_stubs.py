"""The type stubs (_native.pyi) name exactly what the compiled module has: a test that fails
when the two drift apart."""

import ast
from pathlib import Path

import ecgwgpu
from ecgwgpu import _native

STUBS = Path(ecgwgpu.__file__).with_name("_native.pyi")


def stubbed():
    tree = ast.parse(STUBS.read_text())
    top, classes = set(), {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            top.add(node.name)
        elif isinstance(node, ast.ClassDef):
            top.add(node.name)
            classes[node.name] = {
                n.name for n in node.body if isinstance(n, ast.FunctionDef)
            } - {"__new__"}
    return top, classes


def test_the_stubs_are_installed_with_the_package():
    assert STUBS.exists()
    assert STUBS.with_name("py.typed").exists()


def test_the_stubs_name_what_the_module_has():
    top, classes = stubbed()
    have = {n for n in dir(_native) if not n.startswith("_")}
    assert top == have, f"stubs only: {top - have}; module only: {have - top}"
    for name, members in classes.items():
        cls = getattr(_native, name)
        own = {n for n, v in vars(cls).items() if not n.startswith("_") or n == "__len__"}
        if issubclass(cls, BaseException):
            continue
        assert members == own, f"{name}: stubs only {members - own}; module only {own - members}"
