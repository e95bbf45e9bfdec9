"""Local VMs booted from baked images: NoCloud seeds, QEMU processes, their lifecycle."""
