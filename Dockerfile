# hitl-gate for agent images: an image holding only /opt/hitl-gate (the static binary and the
# shims, as `install.sh agent` lays them out). Agent images copy it with one line, and put the
# shims first on PATH:
#
#   COPY --from=hitl-gate /opt/hitl-gate /opt/hitl-gate
#   ENV PATH=/opt/hitl-gate/shims:$PATH
#
# The build context is what install.sh puts under --root (docs/install.md has the commands):
#
#   bin=$(scripts/build-static)
#   ctx=$(mktemp -d)
#   ./install.sh agent --root "$ctx" --binary "$bin" --sha256 "$(sha256sum "$bin" | cut -d' ' -f1)"
#   cp Dockerfile "$ctx/" && podman build -t hitl-gate "$ctx"      # or: docker build
#
# FROM scratch: nothing is pulled from a registry; the image holds no shell and no libraries
# (the binary is static).
FROM scratch
COPY opt/hitl-gate/ /opt/hitl-gate/
