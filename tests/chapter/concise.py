# The concise implementation of softmax regression (Dive into Deep Learning, d2l 0.17.6),
# verbatim apart from the import line. "# %%" starts a notebook cell (VS Code, Jupytext),
# one per cell of the book's notebook; the tests run it as a script and as a notebook.
# ruff: noqa
# fmt: off

# %%
import torch
from torch import nn
from softmax_regression import d2l

# %%
batch_size = 256
train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size)

# %%
# PyTorch does not implicitly reshape the inputs. Thus we define the flatten
# layer to reshape the inputs before the linear layer in our network
net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

def init_weights(m):
    if type(m) == nn.Linear:
        nn.init.normal_(m.weight, std=0.01)

net.apply(init_weights);

# %%
loss = nn.CrossEntropyLoss(reduction='none')

# %%
trainer = torch.optim.SGD(net.parameters(), lr=0.1)

# %%
num_epochs = 10
d2l.train_ch3(net, train_iter, test_iter, loss, num_epochs, trainer)
