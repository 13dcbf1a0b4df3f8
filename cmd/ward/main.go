// Command ward is the single Ward binary: coordinator, agent, dev cluster
// and CLI.
package main

import (
	"context"
	"os"

	"github.com/wardcluster/ward/internal/cli"
)

func main() {
	args := cli.ScrubSecretArgs(os.Args[1:])
	os.Exit(cli.Execute(context.Background(), args, os.Stdout, os.Stderr))
}
