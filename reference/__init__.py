"""Reference numpy backpropagation: activation and loss registries, networks built from a
:class:`gradcheck.spec.NetworkSpec`, and SGD training (including the origin document's XOR run)."""
from reference.activations import ACTIVATIONS, Activation, get_activation
from reference.losses import LOSSES, Loss, get_loss
from reference.network import Network, build

__all__ = ["ACTIVATIONS", "Activation", "get_activation", "LOSSES", "Loss", "get_loss", "Network", "build"]
