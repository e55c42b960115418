"""Networks: the backbones, model files, the network input and forward passes (imports pasm.data only)."""
