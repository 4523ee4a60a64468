"""Published-style weights through the user's interface: eval.py with EfficientNetLite0's real ImageNet
weights and the model's own default preprocessing reproduces the reference top-1 within 1 point."""
import json
import re

import pytest

from tests.conftest import IMAGENETTE, SHARED, run_script

WEIGHTS = SHARED / "weights" / "EfficientNetLite0_pretrained.pdparams"
REFERENCE = SHARED / "weights" / "REFERENCE.txt"


@pytest.mark.skipif(not (WEIGHTS.exists() and (IMAGENETTE / "val_list_in1k.txt").exists()),
                    reason="shared weights or Imagenette not present")
def test_efficientnet_lite0_eval_matches_reference_top1(tmp_path):
    reference = float(re.search(r"top-1 ([0-9.]+)", REFERENCE.read_text()).group(1))
    out = tmp_path / "eval.json"
    run_script("eval.py", "--model=EfficientNetLite0", f"--pretrained_model={WEIGHTS.with_suffix('')}",
               f"--data_dir={IMAGENETTE}", "--val_list=val_list_in1k.txt", "--class_dim=1000",
               "--reader_thread=2", f"--save_json_path={out}", timeout=900)
    result = json.loads(out.read_text())
    assert result["samples"] == 3925 and result["skipped"] == 0
    assert abs(result["top1"] - reference) <= 0.01, (result["top1"], reference)
