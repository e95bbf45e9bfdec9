"""The static gate: `builder validate` checks what a bake and a boot would use (rendered
HCL, scripts, user-data, boot-time templates) with the tools that read them, before any VM
starts or cloud money is spent."""
