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
