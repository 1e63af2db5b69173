"""Margin functions: values, exact derivatives, the θ+m > π fallback, straight-through, validation."""
import math

import pytest
import torch

from unicom.losses import make_margin_spec, target_margin


def _numeric_derivative(f, t, h=1e-6):
    return (f(t + h) - f(t - h)) / (2 * h)


@pytest.mark.parametrize("kind,m", [("arcface", (None, 0.5, None)), ("cosface", (None, None, 0.35)),
                                    ("combined", (0.9, 0.4, 0.15)), ("combined", (1.2, 0.2, 0.1))])
def test_value_and_exact_derivative(kind, m):
    spec = make_margin_spec(kind, 64.0, *m)
    t = torch.linspace(-0.999, 0.999, 401, dtype=torch.float64)
    value, grad = target_margin(t, spec)
    theta = torch.acos(t)
    expect = torch.cos(spec.m1 * theta + spec.m2) - spec.m3
    fallback = spec.m1 * theta + spec.m2 > math.pi
    expect = torch.where(fallback, t - spec.m3 - spec.m2 * math.sin(spec.m2), expect)
    assert torch.allclose(value, expect, atol=1e-12)
    # derivative: compare with central differences away from the fallback boundary
    f = lambda x: target_margin(x, spec)[0]
    away = (t - spec.fallback_below).abs() > 1e-3
    assert torch.allclose(grad[away], _numeric_derivative(f, t)[away], rtol=1e-5, atol=1e-6)


def test_arcface_defaults_and_fallback_branch():
    spec = make_margin_spec("arcface")
    assert (spec.scale, spec.m1, spec.m2, spec.m3) == (64.0, 1.0, 0.3, 0.0)
    # θ + m > π  ⇔  t < cos(π − m): the target logit keeps decreasing (t − m·sin m), gradient 1
    t = torch.tensor([math.cos(math.pi - 0.3) - 0.01], dtype=torch.float64)
    value, grad = target_margin(t, spec)
    assert value.item() == pytest.approx(t.item() - 0.3 * math.sin(0.3))
    assert grad.item() == 1.0
    assert spec.fallback_below == pytest.approx(math.cos(math.pi - 0.3))


def test_cosface_and_combined_defaults():
    assert make_margin_spec("cosface").m3 == 0.4 and make_margin_spec("cosface").m2 == 0.0
    c = make_margin_spec("combined")
    assert (c.m1, c.m2, c.m3) == (1.0, 0.3, 0.2)


def test_straight_through_has_unit_gradient_but_the_same_value():
    exact, st = make_margin_spec("arcface", m2=0.5), make_margin_spec("arcface", m2=0.5, straight_through=True)
    t = torch.linspace(-0.8, 0.95, 50, dtype=torch.float64)
    v1, g1 = target_margin(t, exact)
    v2, g2 = target_margin(t, st)
    assert torch.equal(v1, v2)
    assert torch.all(g2 == 1.0) and not torch.allclose(g1, g2)


def test_saturated_cosine_gives_a_finite_gradient():
    spec = make_margin_spec("arcface")
    value, grad = target_margin(torch.tensor([1.0, -1.0]), spec)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()


@pytest.mark.parametrize("kwargs,match", [
    (dict(margin="sphere"), "margin must be one of"),
    (dict(margin="arcface", m3=0.2), "uses m2 only"),
    (dict(margin="cosface", m2=0.3), "uses m3 only"),
    (dict(margin="arcface", scale=0.0), "scale must be"),
    (dict(margin="combined", m2=4.0), "m2"),
    (dict(margin="arcface", interclass_filter=1.5), "interclass_filter"),
])
def test_bad_margin_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_margin_spec(**kwargs)
