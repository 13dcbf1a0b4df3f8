package cli

import (
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// bindPassword adds --password-file for the password of what, and the
// older --password, which still works but warns on warn: a secret on the
// command line shows in the process list and the shell history.
func bindPassword(fl *pflag.FlagSet, warn io.Writer, password, file *string, what string) {
	fl.StringVar(file, "password-file", "", "read the password of "+what+" from this file (default: an empty password)")
	fl.Var(&argvSecret{value: password, warn: warn, flag: "password"}, "password", "the password of "+what+" (deprecated: use --password-file)")
	_ = fl.MarkHidden("password")
}

// argvSecret is a string flag holding a secret given on the command line;
// setting it prints a warning.
type argvSecret struct {
	value *string
	warn  io.Writer
	flag  string
}

func (s *argvSecret) String() string { return "" } // never shown in help or errors
func (s *argvSecret) Type() string   { return "string" }
func (s *argvSecret) Set(v string) error {
	*s.value = v
	fmt.Fprintf(s.warn, "ward: warning: --%s is deprecated: a secret on the command line shows in the process list and the shell history; use --%s-file\n", s.flag, s.flag)
	return nil
}
