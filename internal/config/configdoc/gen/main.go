// Command gen writes docs/config.md from the config package; run it with
// `go generate ./internal/config`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/wardcluster/ward/internal/config/configdoc"
)

func main() {
	src := flag.String("src", ".", "directory of the config package's source")
	out := flag.String("o", "docs/config.md", "file to write")
	flag.Parse()
	b, err := configdoc.Render(*src)
	if err == nil {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "configdoc:", err)
		os.Exit(1)
	}
}
