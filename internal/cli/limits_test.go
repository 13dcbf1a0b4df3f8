package cli

import (
	"testing"

	"github.com/spf13/pflag"

	"github.com/wardcluster/ward/internal/config"
)

// TestLimitFlags: every limit has a flag and help text, and nothing in
// limitUsage names a flag no limit has.
func TestLimitFlags(t *testing.T) {
	l := config.LimitsDefaults()
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	bindLimitFlags(fs, &l) // panics on a limit without help text
	keys := config.Keys(&l)
	if len(keys) != len(limitUsage) {
		t.Errorf("%d limits, %d help texts", len(keys), len(limitUsage))
	}
	for _, k := range keys {
		if fs.Lookup(k.Flag) == nil {
			t.Errorf("limit %s has no flag", k.Name)
		}
	}
}
