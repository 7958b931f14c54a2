"""Shared test setup: nothing may reach a model hub, and every test starts from the same seed."""

import os

# Set before any test imports transformers, which reads these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# The app tests compare the app's numbers with fp32 analysis calls; the app's bf16 is tested on its own.
os.environ["LXMERT_PRECISION"] = "fp32"

import pytest  # noqa: E402
import torch  # noqa: E402

from lxmert.config import LxmertConfig  # noqa: E402


@pytest.fixture(autouse=True)
def fixed_seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def restored_threads():
    """Commands run in-process set torch's thread count for their run; the next test gets the session's again."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def single_thread():
    """Tiny models run fastest on one thread, and a busy shared CPU makes more threads much slower: a module
    that trains one takes this for every test (``pytestmark = pytest.mark.usefixtures("single_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_config() -> LxmertConfig:
    """The ``tiny`` preset with small output vocabularies, so tests build models in milliseconds."""
    return LxmertConfig.preset(
        "tiny", vocab_size=99, num_object_labels=11, num_attr_labels=7, num_qa_labels=13, visual_feat_dim=24
    )


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory: pytest.TempPathFactory):
    """A saved tiny torchvision detector (``tests.test_detection_model.tiny_detector``), one per test module."""
    from tests.test_detection_model import tiny_detector

    path = tmp_path_factory.mktemp("detector")
    tiny_detector().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    """The analysis tests' toy vocabulary (``tests.analysis_toy.toy_tokenizer``), one per test module."""
    from analysis_toy import toy_tokenizer

    return toy_tokenizer(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(scope="module")
def model():
    """The analysis tests' toy question-answering model (``tests.analysis_toy.toy_qa_model``), one per test module:
    what a test changes in it, only the same module's later tests see."""
    from analysis_toy import toy_qa_model

    return toy_qa_model()


@pytest.fixture(scope="module")
def pretraining_model():
    """The analysis tests' toy model with every pretraining head (``tests.analysis_toy.toy_pretraining_model``),
    one per test module, like :func:`model`."""
    from analysis_toy import toy_pretraining_model

    return toy_pretraining_model()
