"""The models' quality: photo and measurement macro-F1, backbone options, answer bands on a garden-like protocol, not-a-flower, feature variants, the int8 backbone."""
