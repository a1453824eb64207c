"""Names shared across components are derived in one place."""

import pytest

from bvae_tf import features

pytestmark = pytest.mark.unit


def test_feature_names():
    assert features.items_key("click") == "click_items"
    assert features.heldout_key("click") == "click_heldout"
    assert features.oov_key(features.items_key("cart")) == "cart_items_oov"
    assert features.item_ids_output("purchase") == "purchase_item_ids"
    assert features.scores_output("purchase") == "purchase_scores"


@pytest.mark.parametrize("bad", [[], ["a", "a"], [""], ["has space"], ["x-y"]])
def test_validate_behaviors_rejects(bad):
    with pytest.raises(ValueError, match="behavior"):
        features.validate_behaviors(bad)


def test_validate_behaviors_accepts_any_names():
    assert features.validate_behaviors(["view", "add_to_cart2"]) == ("view", "add_to_cart2")
