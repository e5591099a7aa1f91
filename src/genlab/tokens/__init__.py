"""Discrete tokens: "compress, then generate".

A tokenizer (VQ-VAE, FSQ, Gumbel-softmax quantizer, VQGAN) turns an image into a grid of
codebook indices; a Transformer prior learns the distribution of those indices; Medusa
heads make its decoding faster. `genlab.tokens.protocol.Tokenizer` is the interface the
prior relies on.
"""
