package cli

import (
	"strings"
	"unsafe"
)

// secretFlags carry secrets on the command line; their values are scrubbed
// from the process's argument memory so `ps` never shows them.
var secretFlags = []string{"--join", "--password"}

// ScrubSecretArgs returns a private copy of args and overwrites the values
// of secret flags in the original argument memory (what /proc/PID/cmdline
// and ps read). It must run before anything else reads os.Args.
func ScrubSecretArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.Clone(a)
	}
	for i := 0; i < len(args); i++ {
		for _, f := range secretFlags {
			switch {
			case args[i] == f && i+1 < len(args):
				wipe(args[i+1])
			case strings.HasPrefix(args[i], f+"="):
				wipe(args[i][len(f)+1:])
			}
		}
	}
	return out
}

// wipe overwrites a string's bytes in place. It is only used on the
// process's original argument strings, which live in writable memory and
// are never read again.
func wipe(s string) {
	if len(s) == 0 {
		return
	}
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	for i := range b {
		b[i] = 'x'
	}
}
