"""Training: augmentation, PASM masks and erasing, Eq. 1 and Eq. 4 losses, the resumable SGD loop
(imports pasm.data and pasm.nn)."""
