"""lavida_mini: a small Elastic Mixture-of-Transformers masked-diffusion model (PyTorch side).

Modules:
- config:    ModelConfig and named configurations (FIXTURE).
- tokenizer: the word-v1 tokenizer and its vocabulary.
- model:     ElasticMoT, the training-framework forward.
- vq:        the image tokenizer (fixture: a seeded random patch codebook).
- segments:  the ONNX segment modules of docs/model-package.md, sharing ElasticMoT's parameters.
- export:    writes a lavida-model-package/v1 folder (segments, manifest.json, golden.json).
- selftest:  checks that the segment decomposition reproduces the forward.
"""
