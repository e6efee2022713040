"""Import name → PyPI distribution mapping, and requirement inference from imports (SPEC §7)."""

from __future__ import annotations

import keyword
import re
import sys

import pytest

from rgrid.envs.distributions import (
    IMPORT_TO_DISTRIBUTION,
    distribution_for,
    infer_requirements,
    normalize,
)

PEP508_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


@pytest.mark.parametrize(
    ("import_name", "distribution"),
    [
        ("yaml", "PyYAML"),
        ("cv2", "opencv-python"),
        ("sklearn", "scikit-learn"),
        ("PIL", "Pillow"),
        ("bs4", "beautifulsoup4"),
        ("dateutil", "python-dateutil"),
        ("dotenv", "python-dotenv"),
        ("jwt", "PyJWT"),
        ("Crypto", "pycryptodome"),
        ("OpenSSL", "pyOpenSSL"),
        ("magic", "python-magic"),
        ("docx", "python-docx"),
        ("pptx", "python-pptx"),
        ("git", "GitPython"),
        ("serial", "pyserial"),
        ("usb", "pyusb"),
        ("zmq", "pyzmq"),
        ("attr", "attrs"),
        ("google", "protobuf"),
        ("skimage", "scikit-image"),
        ("Levenshtein", "python-Levenshtein"),
        ("MySQLdb", "mysqlclient"),
        ("psycopg2", "psycopg2-binary"),
        ("telegram", "python-telegram-bot"),
        ("discord", "discord.py"),
        ("fitz", "PyMuPDF"),
        ("pkg_resources", "setuptools"),
        ("win32api", "pywin32"),
        ("wx", "wxPython"),
        ("jose", "python-jose"),
        ("slugify", "python-slugify"),
        ("multipart", "python-multipart"),
        ("socks", "PySocks"),
        ("nacl", "PyNaCl"),
        ("gi", "PyGObject"),
        ("cairo", "pycairo"),
        ("ldap", "python-ldap"),
        ("memcache", "python-memcached"),
        ("kafka", "kafka-python"),
        ("snappy", "python-snappy"),
        ("Bio", "biopython"),
        ("igraph", "python-igraph"),
        ("faiss", "faiss-cpu"),
        ("rest_framework", "djangorestframework"),
        ("django_filters", "django-filter"),
        ("websocket", "websocket-client"),
        ("grpc", "grpcio"),
        ("dns", "dnspython"),
        ("github", "PyGithub"),
        ("pywt", "PyWavelets"),
        ("markdown_it", "markdown-it-py"),
        ("osgeo", "GDAL"),
    ],
)
def test_tricky_mappings(import_name: str, distribution: str) -> None:
    assert distribution_for(import_name) == distribution
    assert IMPORT_TO_DISTRIBUTION[import_name] == distribution


@pytest.mark.parametrize("name", ["requests", "numpy", "tensorflow", "lxml", "sentencepiece"])
def test_unknown_names_are_their_own_distribution(name: str) -> None:
    assert name not in IMPORT_TO_DISTRIBUTION
    assert distribution_for(name) == name


def test_identity_mappings_are_not_in_the_table() -> None:
    # same name once normalised: the caller's fallback already gets these right
    for name in ("markdown", "tflite_runtime", "sklearn_crfsuite", "flask_cors"):
        assert name not in IMPORT_TO_DISTRIBUTION


def test_normalize_is_pep503() -> None:
    assert normalize("Foo__Bar.baz-Qux") == "foo-bar-baz-qux"
    assert normalize("PyYAML") == "pyyaml"
    assert normalize("zope.interface") == "zope-interface"


def test_stdlib_is_dropped() -> None:
    imported = ["json", "os", "sqlite3", "tomllib", "asyncio", "__future__", "sys", "requests"]
    assert infer_requirements(imported) == ["requests"]


def test_local_modules_are_dropped() -> None:
    got = infer_requirements(["helpers", "yaml", "model"], local={"helpers", "model"})
    assert got == ["PyYAML"]


def test_local_shadows_a_known_mapping() -> None:
    # a sibling yaml.py is what `import yaml` finds; nothing to install
    assert infer_requirements(["yaml", "numpy"], local=["yaml"]) == ["numpy"]


def test_duplicates_collapse_by_normalised_name() -> None:
    assert infer_requirements(["PIL", "PIL"]) == ["Pillow"]
    assert infer_requirements(["yaml", "pyyaml"]) == ["PyYAML"]
    assert infer_requirements(["PyYAML", "yaml"]) == ["PyYAML"]
    assert infer_requirements(["win32api", "win32con", "pythoncom"]) == ["pywin32"]
    assert infer_requirements(["bson", "pymongo", "gridfs"]) == ["pymongo"]


def test_result_is_sorted_case_insensitively() -> None:
    got = infer_requirements(["zmq", "yaml", "numpy", "PIL", "attr", "bs4"])
    assert got == ["attrs", "beautifulsoup4", "numpy", "Pillow", "PyYAML", "pyzmq"]
    assert got == sorted(got, key=str.lower)


def test_invalid_private_and_dunder_names_are_dropped() -> None:
    imported = ["", "1abc", "foo-bar", "a.b", "has space", "class", "_private", "__main__", "ok"]
    assert infer_requirements(imported) == ["ok"]


def test_accepts_any_iterable_and_empty_input() -> None:
    assert infer_requirements(iter(["cv2"])) == ["opencv-python"]
    assert infer_requirements([]) == []


def test_table_is_sizeable_and_sorted() -> None:
    assert 300 <= len(IMPORT_TO_DISTRIBUTION) <= 450
    assert list(IMPORT_TO_DISTRIBUTION) == sorted(IMPORT_TO_DISTRIBUTION)


def test_table_sanity() -> None:
    stdlib = set(sys.stdlib_module_names)
    for key, value in IMPORT_TO_DISTRIBUTION.items():
        assert key.isidentifier() and not keyword.iskeyword(key), key
        assert not key.startswith("_"), key
        assert key not in stdlib, key
        assert PEP508_NAME.match(value), value
        assert normalize(value) != normalize(key), f"identity entry {key!r}"


def test_each_distribution_has_one_spelling() -> None:
    spellings: dict[str, set[str]] = {}
    for value in IMPORT_TO_DISTRIBUTION.values():
        spellings.setdefault(normalize(value), set()).add(value)
    assert {k: v for k, v in spellings.items() if len(v) > 1} == {}
