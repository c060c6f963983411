"""Unit tests of kubesim's pure parts: the rolling-update arithmetic (K8S-API.md
§3.4, upstream rolling.go / deployment_util.go), selectors and the three patch types."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kubesim import patch, rollout, store  # noqa: E402

RU = lambda s, u: {"type": "RollingUpdate",  # noqa: E731
                   "rollingUpdate": {"maxSurge": s, "maxUnavailable": u}}


class Fenceposts(unittest.TestCase):
    def test_defaults_on_ten(self):
        # 25%/25% of 10: surge rounds up (3), unavailable down (2): <= 13 pods, >= 8 available.
        self.assertEqual(rollout.resolve_fenceposts("25%", "25%", 10), (3, 2))

    def test_one_replica(self):
        self.assertEqual(rollout.resolve_fenceposts("25%", "25%", 1), (1, 0))

    def test_both_zero_forces_one_unavailable(self):
        self.assertEqual(rollout.resolve_fenceposts(0, 0, 5), (0, 1))
        self.assertEqual(rollout.resolve_fenceposts("0%", "0%", 5), (0, 1))
        self.assertEqual(rollout.resolve_fenceposts("10%", "10%", 4), (1, 0))

    def test_integers_as_is(self):
        self.assertEqual(rollout.resolve_fenceposts(1, 0, 4), (1, 0))
        self.assertEqual(rollout.resolve_fenceposts(7, 9, 4), (7, 9))

    def test_max_unavailable_capped_and_recreate(self):
        self.assertEqual(rollout.max_unavailable(RU(0, 9), 4), 4)
        self.assertEqual(rollout.max_unavailable({"type": "Recreate"}, 4), 0)
        self.assertEqual(rollout.max_unavailable(RU("25%", "25%"), 0), 0)

    def test_bad_percentage(self):
        with self.assertRaises(ValueError):
            rollout.resolve_fenceposts("x%", 0, 3)


class ScaleUp(unittest.TestCase):
    def test_new_rs_first_step(self):
        # replicas 10, surge 3: old RS at 10 -> new RS may go to 3.
        self.assertEqual(rollout.new_rs_new_replicas(RU("25%", "25%"), 10, 10, 0), 3)

    def test_no_room(self):
        self.assertEqual(rollout.new_rs_new_replicas(RU("25%", "25%"), 10, 13, 3), 3)

    def test_capped_at_replicas(self):
        # Room for 3 more, but the new RS needs only 1 to reach replicas.
        self.assertEqual(rollout.new_rs_new_replicas(RU(3, 0), 10, 10, 9), 10)

    def test_spec_sums_not_pods(self):
        self.assertEqual(rollout.new_rs_new_replicas(RU(1, 0), 4, 4, 0), 1)
        self.assertEqual(rollout.new_rs_new_replicas(RU(1, 0), 4, 5, 1), 1)

    def test_recreate(self):
        self.assertEqual(rollout.new_rs_new_replicas({"type": "Recreate"}, 4, 4, 0), 4)


class ScaleDown(unittest.TestCase):
    def test_max_scaled_down(self):
        # 10 replicas, unavailable 2 -> minAvailable 8; 13 pods, new RS 3 with 0 available.
        self.assertEqual(rollout.max_scaled_down(RU("25%", "25%"), 10, 13, 3, 0), 2)
        # Same, new RS fully available: 13 - 8 - 0 = 5.
        self.assertEqual(rollout.max_scaled_down(RU("25%", "25%"), 10, 13, 3, 3), 5)
        # maxUnavailable 0: nothing until new pods are available.
        self.assertEqual(rollout.max_scaled_down(RU(1, 0), 4, 5, 1, 0), 0)
        self.assertEqual(rollout.max_scaled_down(RU(1, 0), 4, 5, 1, 1), 1)

    def test_cleanup_unhealthy_oldest_first_within_budget(self):
        cuts, n = rollout.cleanup_unhealthy([("a", 3, 1), ("b", 4, 4), ("c", 5, 2)], 3)
        self.assertEqual((cuts, n), ({"a": 1, "c": 4}, 3))

    def test_scale_down_old_for_rolling(self):
        # available 10, minAvailable 8 -> 2 more, oldest first.
        cuts, n = rollout.scale_down_old_for_rolling([("a", 1), ("b", 9)], 10, 2, 10)
        self.assertEqual((cuts, n), ({"a": 0, "b": 8}, 2))
        self.assertEqual(rollout.scale_down_old_for_rolling([("a", 4)], 4, 0, 4), ({}, 0))


class Hash(unittest.TestCase):
    def test_alphabet_and_determinism(self):
        h = rollout.template_hash('{"a":1}')
        self.assertEqual(h, rollout.template_hash('{"a":1}'))
        self.assertTrue(set(h) <= set("456789bcdf"), h)
        self.assertNotEqual(h, rollout.template_hash('{"a":1}', 1))
        self.assertEqual(rollout.safe_encode("0123456789"), "456789bcdf")


class Selectors(unittest.TestCase):
    def test_label_selector(self):
        reqs = store.parse_label_selector("app=web,track in (canary, production),!legacy,tier")
        self.assertTrue(store.match_reqs(reqs, {"app": "web", "track": "canary", "tier": "x"}))
        self.assertFalse(store.match_reqs(reqs, {"app": "web", "track": "dev", "tier": "x"}))
        self.assertFalse(store.match_reqs(reqs, {"app": "web", "track": "canary", "tier": "x",
                                                 "legacy": "1"}))
        self.assertTrue(store.match_reqs(store.parse_label_selector("a!=b"), {}))
        with self.assertRaises(ValueError):
            store.parse_label_selector("a=b=c")

    def test_selector_string(self):
        self.assertEqual(store.selector_string({"matchLabels": {"b": "2", "a": "1"}}), "a=1,b=2")


class Patches(unittest.TestCase):
    DEP = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                    "template": {"spec": {"containers": [
                        {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
                        {"name": "b", "image": "b:1"}]}}}}

    def test_set_image_smp_with_set_element_order(self):
        p = {"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"image": "a:2", "name": "a"}]}}}}
        out = patch.strategic_merge(self.DEP, p)
        cs = out["spec"]["template"]["spec"]["containers"]
        self.assertEqual([c["name"] for c in cs], ["b", "a"])
        self.assertEqual(cs[1], {"name": "a", "image": "a:2", "env": [{"name": "X",
                                                                      "value": "1"}]})

    def test_smp_delete_and_replace_and_retain_keys(self):
        p = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate",
                                   "rollingUpdate": None},
                      "template": {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}}}
        out = patch.strategic_merge(self.DEP, p)
        self.assertEqual(out["spec"]["strategy"], {"type": "Recreate"})
        self.assertEqual([c["name"] for c in out["spec"]["template"]["spec"]["containers"]],
                         ["a"])
        out = patch.strategic_merge(self.DEP, {"spec": {"template": {"$patch": "replace",
                                                                     "metadata": {}}}})
        self.assertEqual(out["spec"]["template"], {"metadata": {}})

    def test_json_patch(self):
        out = patch.json_patch(self.DEP, [
            {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "a"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "a:3"},
            {"op": "add", "path": "/metadata", "value": {"annotations": {"x/y": "1"}}},
            {"op": "remove", "path": "/metadata/annotations/x~1y"}])
        self.assertEqual(out["spec"]["template"]["spec"]["containers"][0]["image"], "a:3")
        self.assertEqual(out["metadata"], {"annotations": {}})
        with self.assertRaises(patch.PatchError):
            patch.json_patch(self.DEP, [{"op": "test", "path": "/spec/template/spec/"
                                         "containers/0/name", "value": "z"}])
        with self.assertRaises(patch.PatchError):
            patch.json_patch(self.DEP, [{"op": "remove", "path": "/nope"}])

    def test_merge_patch(self):
        out = patch.merge_patch(self.DEP, {"spec": {"replicas": 3, "strategy": None}})
        self.assertEqual(out["spec"]["replicas"], 3)
        self.assertNotIn("strategy", out["spec"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
