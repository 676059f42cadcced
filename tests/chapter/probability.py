# Probability (Dive into Deep Learning 2.6, d2l 0.17.6, PyTorch), verbatim apart from the
# import line; the notebook magic is a comment, as Jupytext writes it.
# ruff: noqa
# fmt: off

# %%
# %matplotlib inline
import torch
from torch.distributions import multinomial
from softmax_regression import d2l

# %%
fair_probs = torch.ones([6]) / 6
multinomial.Multinomial(1, fair_probs).sample()

# %%
multinomial.Multinomial(10, fair_probs).sample()

# %%
# Store the results as 32-bit floats for division
counts = multinomial.Multinomial(1000, fair_probs).sample()
counts / 1000  # Relative frequency as the estimate

# %%
counts = multinomial.Multinomial(10, fair_probs).sample((500,))
cum_counts = counts.cumsum(dim=0)
estimates = cum_counts / cum_counts.sum(dim=1, keepdims=True)

d2l.set_figsize((6, 4.5))
for i in range(6):
    d2l.plt.plot(estimates[:, i].numpy(),
                 label=("P(die=" + str(i + 1) + ")"))
d2l.plt.axhline(y=0.167, color='black', linestyle='dashed')
d2l.plt.gca().set_xlabel('Groups of experiments')
d2l.plt.gca().set_ylabel('Estimated probability')
d2l.plt.legend();
