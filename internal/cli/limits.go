package cli

import (
	"fmt"
	"reflect"

	"github.com/spf13/pflag"

	"github.com/wardcluster/ward/internal/config"
)

// limitUsage is the help text of each flag of config.Limits (the flag names
// come from the fields' flag tags).
var limitUsage = map[string]string{
	"join-global-rate":                  "join and heal attempts per second allowed from all source addresses together",
	"join-global-burst":                 "join and heal attempts allowed in a burst from all source addresses together",
	"max-request-bytes":                 "largest request body on the cluster port, except job submissions",
	"max-job-bytes":                     "largest job submission body",
	"public-max-request-bytes":          "largest request body on the public port (join, heal, console forms)",
	"max-header-bytes":                  "largest request line and headers, both ports",
	"read-header-timeout":               "time to read a request's headers, both ports",
	"public-read-timeout":               "time to read a whole request on the public port",
	"public-write-timeout":              "time to write an answer on the public port",
	"public-idle-timeout":               "idle keep-alive connections on the public port close after this",
	"cluster-read-timeout":              "time to read a whole API request on the cluster port",
	"cluster-idle-timeout":              "idle API connections on the cluster port close after this",
	"handshake-timeout":                 "time a TLS handshake (or the plaintext greeting) may take",
	"public-max-conns":                  "open connections on the public port, in total",
	"public-max-conns-per-source":       "open connections on the public port from one source address",
	"public-max-handshakes":             "TLS handshakes in flight on the public port, in total",
	"public-max-handshakes-per-source":  "TLS handshakes in flight on the public port from one source address",
	"cluster-max-handshakes":            "TLS handshakes in flight on the cluster and plaintext ports, in total",
	"cluster-max-handshakes-per-source": "TLS handshakes in flight on the cluster and plaintext ports from one source address",
	"max-frame-bytes":                   "largest agent session frame the coordinator reads",
	"session-queue-bytes":               "bytes queued for one agent session (frames to send, output to store)",
}

// bindLimitFlags adds a flag for every setting of config.Limits, bound to
// l, with l's values as defaults.
func bindLimitFlags(f *pflag.FlagSet, l *config.Limits) {
	v := reflect.ValueOf(l).Elem()
	for _, k := range config.Keys(l) {
		usage, ok := limitUsage[k.Flag]
		if !ok {
			panic(fmt.Sprintf("config.Limits.%s (flag --%s) has no help text in limitUsage", k.Field, k.Flag))
		}
		switch p := v.FieldByName(k.Field).Addr().Interface().(type) {
		case *int:
			f.IntVar(p, k.Flag, *p, usage)
		case *float64:
			f.Float64Var(p, k.Flag, *p, usage)
		case *config.Duration:
			f.Var(durationFlag{p}, k.Flag, usage)
		default:
			panic(fmt.Sprintf("config.Limits.%s has a type no flag binds: %T", k.Field, p))
		}
	}
}
