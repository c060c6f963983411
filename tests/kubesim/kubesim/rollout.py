"""The Deployment controller's arithmetic, as pure functions (K8S-API.md §3.4-3.6;
upstream pkg/controller/deployment/rolling.go and util/deployment_util.go)."""


def scaled_value(v, total, round_up):
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(v, bool):
        raise ValueError("invalid value %r" % (v,))
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.endswith("%"):
        pct = int(v[:-1])
        num = pct * total
        return -(-num // 100) if round_up else num // 100
    if isinstance(v, str):
        return int(v)
    raise ValueError("invalid value %r" % (v,))


def resolve_fenceposts(max_surge, max_unavailable, replicas):
    """(surge, unavailable) as ResolveFenceposts: surge rounds up, unavailable down,
    both zero forces unavailable to 1."""
    surge = scaled_value(max_surge if max_surge is not None else 0, replicas, True)
    unavail = scaled_value(max_unavailable if max_unavailable is not None else 0, replicas, False)
    if surge == 0 and unavail == 0:
        unavail = 1
    return surge, unavail


def max_unavailable(strategy, replicas):
    """MaxUnavailable: capped at replicas, 0 for Recreate or replicas 0."""
    if strategy.get("type") != "RollingUpdate" or replicas == 0:
        return 0
    ru = strategy.get("rollingUpdate") or {}
    _, u = resolve_fenceposts(ru.get("maxSurge"), ru.get("maxUnavailable"), replicas)
    return min(u, replicas)


def max_surge(strategy, replicas):
    if strategy.get("type") != "RollingUpdate":
        return 0
    ru = strategy.get("rollingUpdate") or {}
    s, _ = resolve_fenceposts(ru.get("maxSurge"), ru.get("maxUnavailable"), replicas)
    return s


def new_rs_new_replicas(strategy, replicas, all_spec_sum, new_spec):
    """NewRSNewReplicas: the new RS's size after one scale-up step."""
    if strategy.get("type") == "Recreate":
        return replicas
    surge = max_surge(strategy, replicas)
    max_total = replicas + surge
    if all_spec_sum >= max_total:
        return new_spec
    scale_up = max_total - all_spec_sum
    scale_up = min(scale_up, replicas - new_spec)
    return new_spec + scale_up


def max_scaled_down(strategy, replicas, all_pods_count, new_spec, new_available):
    """reconcileOldReplicaSets: how many old pods may go in this step."""
    min_available = replicas - max_unavailable(strategy, replicas)
    new_unavailable = new_spec - new_available
    return all_pods_count - min_available - new_unavailable


def cleanup_unhealthy(old_rss, budget):
    """old_rss: [(name, spec, available)] oldest first. Returns ({name: new spec},
    total removed): each loses up to spec-available, within budget."""
    out, total = {}, 0
    for name, spec, avail in old_rss:
        if total >= budget:
            break
        if spec == 0 or spec == avail:
            continue
        cut = min(spec - avail, budget - total)
        out[name] = spec - cut
        total += cut
    return out, total


def scale_down_old_for_rolling(old_rss, replicas, max_unavail, available_all):
    """scaleDownOldReplicaSetsForRollingUpdate: old_rss [(name, spec)] oldest first."""
    min_available = replicas - max_unavail
    total = available_all - min_available
    if total <= 0:
        return {}, 0
    out, done = {}, 0
    for name, spec in old_rss:
        if done >= total:
            break
        if spec == 0:
            continue
        cut = min(spec, total - done)
        out[name] = spec - cut
        done += cut
    return out, done


SAFE = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(s):
    return "".join(SAFE[ord(c) % len(SAFE)] for c in s)


def template_hash(template_json, collision_count=None):
    """FNV-1a-32 of the canonical template JSON (upstream hashes Go's spew dump, which a
    double cannot reproduce), encoded like rand.SafeEncodeString."""
    h = 0x811C9DC5
    data = template_json.encode()
    if collision_count is not None:
        data += int(collision_count).to_bytes(8, "little")
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return safe_encode(str(h))
