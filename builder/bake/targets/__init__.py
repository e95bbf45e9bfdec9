"""One module per bake target behind the same shape: what to do after Packer succeeded."""
