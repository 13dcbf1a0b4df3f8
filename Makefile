# Convenience targets; the scripts they call are the real interface.
.PHONY: package test docs

# .deb and .rpm into dist/ (WARD_VERSION=X.Y.Z for a release).
package:
	packaging/build.sh

test:
	./test.sh

# Regenerate docs/config.md from the config structs.
docs:
	go generate ./internal/config
