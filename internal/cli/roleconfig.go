package cli

import (
	"io"
	"log/slog"

	"github.com/spf13/pflag"

	"github.com/wardcluster/ward/internal/agent"
	"github.com/wardcluster/ward/internal/config"
	"github.com/wardcluster/ward/internal/logging"
)

// recentLogLines is how many log lines a coordinator keeps for support
// bundles.
const recentLogLines = 2000

// roleActionFlags are the flags of `ward coordinator` and `ward agent`
// that act instead of configuring, so they have no config key.
func roleActionFlags(f *pflag.FlagSet, file *string, validate, printCfg *bool) {
	f.StringVar(file, "config", "", "configuration file (JSON, version 1; see docs/config.md); flags override it")
	f.BoolVar(validate, "validate", false, "check the configuration and exit")
	f.BoolVar(printCfg, "print-config", false, "print the effective configuration, each setting with its source (default, file or flag), and exit")
}

// roleLogFlags binds --log-level and --log-format to a role's config; they
// stand in for the global flags of the same names.
func roleLogFlags(f *pflag.FlagSet, level, format *string) {
	f.StringVar(level, "log-level", *level, "log level: debug, info, warn, error")
	f.StringVar(format, "log-format", *format, "log line format on standard error: text or json")
}

// effectiveConfig returns the role's config: the file's (when --config is
// given) with every flag the user set on top, and the keys the file set.
// flags holds the defaults with the flags applied.
func effectiveConfig[T config.Coordinator | config.Agent](fs *pflag.FlagSet, file string, flags *T, load func(string) (T, error)) (T, map[string]bool, error) {
	if file == "" {
		return *flags, nil, nil
	}
	out, err := load(file)
	if err != nil {
		return out, nil, err
	}
	keys, err := config.FileKeys(file)
	if err != nil {
		return out, nil, err
	}
	config.Overlay(&out, flags, fs.Changed)
	return out, keys, nil
}

// printEffective prints settings as a table, or as JSON with -o json.
func printEffective(g *globals, settings []config.Setting) error {
	if g.json() {
		return printJSON(g.stdout, settings)
	}
	t := newTable(g.stdout, "KEY", "VALUE", "SOURCE")
	for _, s := range settings {
		src := string(s.Source)
		if s.Source == config.SourceFlag {
			src += " --" + s.Flag
		}
		t.row(s.Key, config.FormatValue(s.Value), src)
	}
	t.flush()
	return nil
}

// roleLogger builds a role's logger from its config and makes it the
// default, so every package logs the same way.
func roleLogger(g *globals, level, format string, recent *logging.Ring) (*slog.Logger, error) {
	log, err := logging.New(g.stderr, level, format, recent)
	if err != nil {
		return nil, err
	}
	slog.SetDefault(log)
	return log, nil
}

// agentJoinString returns the join string an agent should use: from --join
// or the join file. A join file that comes only from the config file is
// not read once the node has joined, so a service's config may keep
// naming it.
func agentJoinString(cfg config.Agent, join string, fileFromFlag bool, stdin io.Reader) (string, error) {
	file := cfg.JoinFile
	if join != "" && !fileFromFlag {
		file = "" // --join on the command line overrides the config file's join_file
	}
	if join == "" && !fileFromFlag && agent.Joined(cfg.DataDir) {
		return "", nil
	}
	return readJoin(join, file, stdin)
}
