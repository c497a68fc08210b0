"""GPU generations: the static catalog (pure) and NVML discovery (I/O)."""
