"""The node agent: baked into every image, runs once per boot after cloud-init (its role
steps retried on failure, builder/agent/boot.py).

It must run on the image's own Debian Python with only the standard library, PyYAML and
Jinja2 (both already there as cloud-init's dependencies): nothing else of builder is
imported from here.
"""
