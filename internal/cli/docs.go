package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/buildinfo"
)

func newDocsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "docs",
		Short: "Write Ward's CLI documentation: man pages or markdown",
		Long: `Write the reference of every ward command, generated from the command tree so
it always matches this binary. The packages ship the man pages (man ward,
man ward-agent, ...) and the markdown. The configuration file reference is
docs/config.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	var manDir, mdDir string
	man := &cobra.Command{
		Use:   "man --dir DIR",
		Short: "Write a man page (section 1) for every command into DIR",
		Long: `Write a man page for every command into DIR: ward.1, ward-agent.1,
ward-job-status.1 and so on. The date in the pages is $SOURCE_DATE_EPOCH
when set, so package builds are reproducible.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			root, err := docsRoot(cmd, manDir)
			if err != nil {
				return err
			}
			header := &doc.GenManHeader{Title: "WARD", Section: "1", Source: "Ward " + buildinfo.Version(), Manual: "Ward Manual"}
			if err := doc.GenManTree(root, header, manDir); err != nil {
				return fmt.Errorf("write man pages into %s: %w", manDir, err)
			}
			fmt.Fprintf(g.stderr, "wrote man pages into %s\n", manDir)
			return nil
		},
	}
	man.Flags().StringVar(&manDir, "dir", "", "directory to write the pages into (created if missing)")
	md := &cobra.Command{
		Use:   "markdown --dir DIR",
		Short: "Write a markdown page for every command into DIR",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			root, err := docsRoot(cmd, mdDir)
			if err != nil {
				return err
			}
			if err := doc.GenMarkdownTree(root, mdDir); err != nil {
				return fmt.Errorf("write markdown into %s: %w", mdDir, err)
			}
			fmt.Fprintf(g.stderr, "wrote markdown pages into %s\n", mdDir)
			return nil
		},
	}
	md.Flags().StringVar(&mdDir, "dir", "", "directory to write the pages into (created if missing)")
	cmd.AddCommand(man, md)
	return cmd
}

// docsRoot checks --dir, creates it, and returns the root command with
// the generation stamp turned off (the pages depend only on the binary).
func docsRoot(cmd *cobra.Command, dir string) (*cobra.Command, error) {
	if dir == "" {
		return nil, api.Errorf(api.CodeInvalidArgument, "pass --dir DIR", "%s needs a directory to write into", cmd.CommandPath())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	root := cmd.Root()
	root.DisableAutoGenTag = true
	return root, nil
}
