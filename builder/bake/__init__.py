"""Baking: the base and package layers, Packer on each target, the tests inside the bake,
offline inspection of the result. One module per concern:

base.py       the Debian base image (mmdebstrap, or an official image and its checksum)
layer.py      a role's Debian packages installed into a copy of the base at native speed
accel.py      KVM when a probe boot works, else TCG
packer.py     which Packer, its version and environment
packerrun.py  one `packer build`: log, stages, cancellation
imagetest.py  testinfra suites over SSH (inside the bake, and against booted VMs)
junit.py      reading the suites' reports
inspect.py    offline hygiene checks of a finished disk
sshkey.py     throwaway SSH keys
targets/      qemu.py, aws.py: one bake of one role on that target
orchestrate.py  many roles: up to date or baked, in parallel, recorded
"""
