"""The model is the book's: Flatten + Linear(784, 10), N(0, 0.01) weights, default bias."""

from __future__ import annotations

import math

import torch
from torch import nn

from softmax_regression.model import SoftmaxRegression, class_scores


def test_same_layers_and_state_dict_as_the_books_net() -> None:
    book = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    ours = SoftmaxRegression()
    assert [type(m) for m in ours] == [nn.Flatten, nn.Linear]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in book.state_dict().items()
    }
    book.load_state_dict(ours.state_dict())
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(book(x), ours(x))


def test_book_initialisation_and_seeding() -> None:
    a = SoftmaxRegression().init_book(torch.Generator().manual_seed(3))
    b = SoftmaxRegression().init_book(torch.Generator().manual_seed(3))
    c = SoftmaxRegression().init_book(torch.Generator().manual_seed(4))
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, c.weight)
    w = a.weight.detach()
    assert abs(float(w.std()) - 0.01) < 0.0005  # 7840 draws of N(0, 0.01)
    assert abs(float(w.mean())) < 0.0005
    # PyTorch's default bias: U(-1/sqrt(784), 1/sqrt(784)).
    assert float(a.bias.detach().abs().max()) <= 1 / math.sqrt(784)
    assert float(a.bias.detach().abs().max()) > 0


def test_initialising_with_a_generator_leaves_the_global_rng_alone() -> None:
    before = torch.random.get_rng_state()
    a = SoftmaxRegression.seeded(torch.Generator().manual_seed(0))
    assert torch.equal(before, torch.random.get_rng_state())
    b = SoftmaxRegression().init_book(torch.Generator().manual_seed(0))
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_class_scores_are_the_forward_pass_transposed() -> None:
    model = SoftmaxRegression().init_book(torch.Generator().manual_seed(0))
    x = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    scores = class_scores(model, x)
    assert scores.shape == (10, 300)
    torch.testing.assert_close(scores, model(x).detach().t(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(class_scores(model, x.reshape(300, 784)), scores)
    assert not scores.requires_grad
