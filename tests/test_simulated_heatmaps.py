"""DistilPose's Simulated Heatmaps and its losses: known values, a direct-formula oracle, gradchecks, and a
fit that recovers a teacher's anisotropic Gaussian."""

from __future__ import annotations

import math

import torch

from posekit.distill.simulated_heatmaps import (
    confidence_loss,
    regression_loss,
    simulated_heatmap_loss,
    simulated_heatmaps,
    teacher_value_at,
)


def test_peak_is_one_at_the_centre_and_widths_lie_along_the_axes() -> None:
    mu = torch.tensor([[[20.0, 12.0]]])
    sigma = torch.tensor([[[3.0, 1.5]]])
    h = simulated_heatmaps(mu, sigma, 48, 32)[0, 0]
    assert h.shape == (32, 48)
    assert h[12, 20] == 1.0 and h.max() == 1.0
    e = math.exp(-0.5)  # one deviation away along each axis
    assert abs(h[12, 23] - e) < 1e-6 and abs(h[12, 17] - e) < 1e-6  # x: σx = 3
    assert abs(h[13, 20] - math.exp(-0.5 / 1.5**2)) < 1e-6  # y: one pixel is 1/1.5 of σy
    assert abs(h[15, 20] - math.exp(-2.0)) < 1e-6  # y: two deviations (3 px = 2 σy)


def test_matches_the_formula_at_every_pixel_for_sub_pixel_centres() -> None:
    g = torch.Generator().manual_seed(0)
    mu = torch.rand(2, 3, 2, generator=g) * torch.tensor([24.0, 16.0])
    sigma = 0.5 + 3 * torch.rand(2, 3, 2, generator=g)
    maps = simulated_heatmaps(mu, sigma, 24, 16)
    for n in range(2):
        for k in range(3):
            (mx, my), (sx, sy) = mu[n, k].tolist(), sigma[n, k].tolist()
            for y in range(0, 16, 5):
                for x in range(0, 24, 7):
                    want = math.exp(-0.5 * ((x - mx) ** 2 / sx**2 + (y - my) ** 2 / sy**2))
                    assert abs(float(maps[n, k, y, x]) - want) < 1e-6


def test_losses_pass_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    mu = (torch.rand(2, 4, 2, generator=g, dtype=torch.float64) * 10 + 1).requires_grad_()
    sigma = (torch.rand(2, 4, 2, generator=g, dtype=torch.float64) * 2 + 0.5).requires_grad_()
    conf = torch.rand(2, 4, generator=g, dtype=torch.float64).requires_grad_()
    teacher = torch.rand(2, 4, 12, 12, generator=g, dtype=torch.float64)
    weights = (torch.rand(2, 4, generator=g) > 0.3).double()
    target = torch.rand(2, 4, 2, generator=g, dtype=torch.float64) * 12
    assert torch.autograd.gradcheck(lambda m, s: simulated_heatmap_loss(m, s, teacher, weights), (mu, sigma))
    assert torch.autograd.gradcheck(lambda c: confidence_loss(mu, c, teacher, weights), (conf,))
    assert torch.autograd.gradcheck(lambda m: regression_loss(m, target, weights, 12, 12), (mu,))


def test_fitting_the_simulated_heatmap_recovers_the_teachers_gaussian() -> None:
    """L_SH's minimum is the teacher's own Gaussian: gradient descent from elsewhere finds its centre and
    both deviations (the knowledge the student's σx, σy are meant to take from the teacher)."""
    teacher = simulated_heatmaps(torch.tensor([[[30.3, 21.7]]]), torch.tensor([[[4.0, 2.0]]]), 64, 48)
    mu = torch.tensor([[[27.0, 24.0]]], requires_grad=True)
    log_sigma = torch.tensor([[[math.log(3.0), math.log(3.0)]]], requires_grad=True)
    opt = torch.optim.Adam([mu, log_sigma], lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        simulated_heatmap_loss(mu, log_sigma.exp(), teacher).backward()
        opt.step()
    assert torch.allclose(mu.detach(), torch.tensor([[[30.3, 21.7]]]), atol=0.02)
    assert torch.allclose(log_sigma.exp().detach(), torch.tensor([[[4.0, 2.0]]]), atol=0.02)
    assert simulated_heatmap_loss(mu, log_sigma.exp(), teacher) < 1e-6


def test_confidence_loss_reads_the_teacher_at_the_rounded_coordinates() -> None:
    teacher = torch.zeros(1, 2, 8, 8)
    teacher[0, 0, 3, 5] = 0.8  # row y = 3, column x = 5
    mu = torch.tensor([[[5.4, 2.6], [20.0, 1.0]]])  # rounds to (5, 3); the second is off the map
    assert teacher_value_at(teacher, mu).tolist() == [[0.800000011920929, 0.0]]
    conf = torch.tensor([[0.5, 0.25]])
    assert abs(float(confidence_loss(mu, conf, teacher)) - (0.3 + 0.25)) < 1e-6
    assert float(confidence_loss(mu, conf, teacher, torch.tensor([[1.0, 0.0]]))) == float(torch.tensor(0.8) - 0.5)


def test_regression_loss_filters_invisible_and_off_map_keypoints() -> None:
    target = torch.tensor([[[2.0, 2.0], [3.0, 3.0], [-1.0, 2.0], [4.0, 4.0]]])
    pred = torch.tensor([[[2.5, 2.0], [9.0, 9.0], [0.0, 2.0], [40.0, 4.0]]])
    visible = torch.tensor([[1.0, 0.0, 1.0, 1.0]])  # 1: invisible; 2: GT off the map; 3: prediction off the map
    assert float(regression_loss(pred, target, visible, 8, 8)) == 0.125  # smooth-L1(0.5) of the first alone
    assert float(regression_loss(pred, target, torch.zeros(1, 4), 8, 8)) == 0.0


def test_a_regression_student_learns_positions_deviations_and_confidence_from_a_teacher() -> None:
    """Overfit through the head's own parameterisation (one feature vector per sample, so only the losses
    decide): trained with L_reg + L_SH + L_CS at eq. 7's weights on a teacher whose heatmaps are anisotropic
    Gaussians (σx 2, σy 1), the head recovers the positions, both deviations, and as its confidence the
    teacher's value where it points: what only the teacher's maps, not the coordinates, can teach it. A teacher
    whose peaks are below 1 pulls σ below its width (L_SH's peak-1 map matches a lower peak by narrowing)."""
    g = torch.Generator().manual_seed(0)
    n, k, hm = 6, 3, 24
    target = 3 + torch.rand(n, k, 2, generator=g) * (hm - 7)  # heatmap pixels
    features = torch.eye(n)[:, :, None, None]  # sample i -> its own feature vector
    widths = {}
    for peak in (1.0, 0.8):
        widths[peak] = _fit_head(features, target, peak * simulated_heatmaps(target, torch.tensor([2.0, 1.0]).expand(n, k, 2), hm, hm), hm)
    mu, sigma, conf, teacher = widths[1.0]
    assert (mu - target).abs().max() < 0.1
    assert torch.allclose(sigma, torch.tensor([2.0, 1.0]).expand(n, k, 2), atol=0.05)
    # s takes the teacher's value at its rounded position (eq. 6): exp(-d²/2σ²) with d the rounding offset
    assert torch.allclose(conf, teacher_value_at(teacher, mu), atol=0.02) and bool((conf > 0.85).all())
    narrower = widths[0.8][1].mean((0, 1)) / torch.tensor([2.0, 1.0])
    assert bool((narrower < 0.95).all() and (narrower > 0.8).all())  # measured 0.89 for both axes


def _fit_head(features: torch.Tensor, target: torch.Tensor, teacher: torch.Tensor, hm: int):  # noqa: ANN202
    from posekit.distill.simulated_heatmaps import ALPHA_CS, ALPHA_SH
    from posekit.models.heads import SimulatedHeatmapHead

    torch.manual_seed(0)
    n, k = target.shape[:2]
    head = SimulatedHeatmapHead(n, k, (hm, hm), hidden=32)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    visible = torch.ones(n, k)
    for _ in range(2500):
        mu, sigma, conf = head(features)
        loss = regression_loss(mu, target, visible, hm, hm) + ALPHA_SH * simulated_heatmap_loss(mu, sigma, teacher)
        loss = loss + ALPHA_CS * confidence_loss(mu, conf, teacher)
        opt.zero_grad()
        loss.backward()
        opt.step()
    mu, sigma, conf = (t.detach() for t in head(features))
    return mu, sigma, conf, teacher
