"""Multi-label metrics and threshold tuning under two-process DDP on an uneven validation split
(151 images: shards of 76 and 75) equal one process's: scikit-learn's AP on the whole split with
the weights rank 0 saved, and the thresholds a single process tunes on them."""

import json

import ddp_multilabel_worker as worker
import numpy as np
import pytest
import torch
from multilabel_data import FEATURES, C, MultiLabelTensorDataModule
from sklearn.metrics import average_precision_score, f1_score
from test_ddp import run_worker
from torch import nn

from ltlight.callbacks.posthoc.threshold_tuning import tune_thresholds


@pytest.mark.slow
def test_multilabel_validation_and_thresholds_under_ddp_equal_one_process(tmp_path):
    result = run_worker("ddp_multilabel_worker.py", tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"multilabel_rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    backbone = nn.Linear(FEATURES, C)
    backbone.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    features, target = MultiLabelTensorDataModule(val_size=worker.VAL_IMAGES).val_set.tensors
    assert len(features) == worker.VAL_IMAGES
    with torch.no_grad():
        probs = torch.sigmoid(backbone(features))
    thresholds = tune_thresholds(probs, target).float()
    torch.testing.assert_close(torch.tensor(ranks[0]["thresholds"]), thresholds)
    ap, f1 = [], []
    for c in range(C):
        known = ~target[:, c].isnan()
        y, p = target[known, c].numpy(), probs[known, c].numpy()
        ap.append(average_precision_score(y, p))
        f1.append(f1_score(y, p >= float(thresholds[c])))
    validate = ranks[0]["validate"]
    assert validate["val/map"] == pytest.approx(np.mean(ap), rel=1e-5)
    assert validate["val/macro_f1"] == pytest.approx(np.mean(f1), rel=1e-5)
