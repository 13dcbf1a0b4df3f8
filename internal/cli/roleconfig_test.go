package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wardcluster/ward/internal/config"
)

// actionFlags act instead of configuring, so they have no config key.
// --join holds a secret on the command line; its config form is join_file.
var actionFlags = map[string][]string{
	"coordinator": {"config", "print-config", "validate"},
	"agent":       {"config", "join", "print-config", "upgrade-tls", "validate"},
}

func roleCommand(t *testing.T, name string) *cobra.Command {
	t.Helper()
	root := NewRoot(&bytes.Buffer{}, &bytes.Buffer{})
	cmd, _, err := root.Find([]string{name})
	if err != nil || cmd.Name() != name {
		t.Fatalf("find %s: %v", name, err)
	}
	return cmd
}

// TestEveryRoleFlagHasAConfigKey fails when a flag is added to `ward
// coordinator` or `ward agent` without a config key (a flag tag on a field
// of config.Coordinator or config.Agent), or a flag tag names no flag.
func TestEveryRoleFlagHasAConfigKey(t *testing.T) {
	for role, cfg := range map[string]any{"coordinator": config.Coordinator{}, "agent": config.Agent{}} {
		t.Run(role, func(t *testing.T) {
			byFlag := map[string]string{}
			for _, k := range config.Keys(cfg) {
				if k.Flag != "" {
					byFlag[k.Flag] = k.Name
				}
			}
			cmd := roleCommand(t, role)
			var unkeyed []string
			cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
				if _, ok := byFlag[f.Name]; !ok {
					unkeyed = append(unkeyed, f.Name)
				}
			})
			sort.Strings(unkeyed)
			if !reflect.DeepEqual(unkeyed, actionFlags[role]) {
				t.Errorf("flags of ward %s without a config key: %v; only %v may lack one (add `flag:\"NAME\"` to the config field the flag sets)", role, unkeyed, actionFlags[role])
			}
			for flag, key := range byFlag {
				if cmd.LocalFlags().Lookup(flag) == nil {
					t.Errorf("config key %s names flag --%s, which ward %s does not have", key, flag, role)
				}
			}
		})
	}
}

// TestEachFlagSetsItsKey sets every keyed flag in turn on top of a config
// file and checks, through --print-config, that exactly its key changed
// and says it came from the flag: a flag bound to the wrong field fails.
func TestEachFlagSetsItsKey(t *testing.T) {
	for role, cfg := range map[string]any{"coordinator": config.Coordinator{}, "agent": config.Agent{}} {
		file := filepath.Join(t.TempDir(), role+".json")
		if err := os.WriteFile(file, []byte(`{"version": 1, "data_dir": "/from/file"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		base := printConfig(t, role, "--config", file)
		if base["data_dir"].Source != config.SourceFile || base["data_dir"].Value != "/from/file" {
			t.Fatalf("%s: data_dir from the file = %+v", role, base["data_dir"])
		}
		for _, k := range config.Keys(cfg) {
			if k.Flag == "" {
				continue
			}
			t.Run(role+"/"+k.Flag, func(t *testing.T) {
				arg, want := sampleValue(t, k)
				got := printConfig(t, role, "--config", file, "--"+k.Flag+"="+arg)
				for name, s := range got {
					switch {
					case name == k.Name:
						if s.Source != config.SourceFlag || !reflect.DeepEqual(s.Value, want) {
							t.Errorf("--%s=%s: key %s = %#v from %s, want %#v from flag", k.Flag, arg, name, s.Value, s.Source, want)
						}
					case !reflect.DeepEqual(s, base[name]):
						t.Errorf("--%s=%s changed key %s: %+v, was %+v", k.Flag, arg, name, s, base[name])
					}
				}
			})
		}
	}
}

// sampleValue is a flag argument for key k and the JSON value it must
// produce.
func sampleValue(t *testing.T, k config.Key) (string, any) {
	switch {
	case k.Type == reflect.TypeOf(config.Duration(0)):
		return "17s", "17s"
	case k.Type == reflect.TypeOf(config.Size(0)):
		return "3GiB", "3GiB"
	case k.Type.Kind() == reflect.String:
		return "/sample-" + k.Name, "/sample-" + k.Name
	case k.Type.Kind() == reflect.Bool:
		return "true", true
	case k.Type.Kind() == reflect.Int, k.Type.Kind() == reflect.Int64:
		return "7", float64(7)
	case k.Type.Kind() == reflect.Float64:
		return "3.5", 3.5
	case k.Type.Kind() == reflect.Slice:
		return "host-a:7443", []any{"host-a:7443"}
	case k.Type.Kind() == reflect.Map:
		return "rack=a", map[string]any{"rack": "a"}
	}
	t.Fatalf("no sample value for %s of type %s", k.Name, k.Type)
	return "", nil
}

type printedSetting struct {
	Value  any           `json:"value"`
	Source config.Source `json:"source"`
}

func printConfig(t *testing.T, role string, args ...string) map[string]printedSetting {
	t.Helper()
	var out, errb bytes.Buffer
	Execute(context.Background(), append([]string{role, "--print-config", "-o", "json"}, args...), &out, &errb)
	var list []struct {
		Key string `json:"key"`
		printedSetting
	}
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatalf("ward %s --print-config %v: %v\nstdout: %s\nstderr: %s", role, args, err, out.String(), errb.String())
	}
	m := map[string]printedSetting{}
	for _, s := range list {
		m[s.Key] = s.printedSetting
	}
	return m
}
