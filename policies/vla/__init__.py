"""Vision-language-action policies (OpenVLA, OpenVLA-OFT, a small trainable VLA), on transformers + peft."""
