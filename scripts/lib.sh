# Shared helpers for the project's scripts (sourced, not run).

# Prints a visible step header with the elapsed time of the run.
step() {
  printf '\n==> %s (%ss)\n' "$1" "$SECONDS" >&2
}

# Ensures the tools the scripts need exist; installs from Debian's packages
# what a fresh machine may lack. Rust and Go come with the machine.
ensure_tools() {
  local missing=()
  for tool in cargo go make; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    echo "missing tools: ${missing[*]} (install Rust with rustup and Go >= 1.26)" >&2
    return 1
  fi
}
