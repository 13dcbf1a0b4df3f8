package config

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
)

// Key is one setting of a role's config struct: its file key, the flag
// that overrides it, and its Go field.
type Key struct {
	Name  string // key in the config file (json tag)
	Flag  string // flag that overrides it; "" when it has none
	Field string // Go field name
	// Owner is the struct type that declares Field: the role's, or one it
	// embeds (such as Limits), whose fields are keys of the role.
	Owner string
	// DocDefault replaces the default in the reference when it depends on
	// the machine (docdefault tag).
	DocDefault string
	Type       reflect.Type
}

// Keys lists the settings of a config struct (Coordinator or Agent, or a
// pointer to one) in field order, without the version field.
func Keys(cfg any) []Key {
	t := reflect.TypeOf(cfg)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []Key
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			// encoding/json puts an embedded struct's keys at the top level.
			out = append(out, Keys(reflect.New(f.Type).Interface())...)
			continue
		}
		if name == "" || name == "-" || name == "version" {
			continue
		}
		out = append(out, Key{Name: name, Flag: f.Tag.Get("flag"), Field: f.Name, Owner: t.Name(), DocDefault: f.Tag.Get("docdefault"), Type: f.Type})
	}
	return out
}

// Overlay copies into dst each setting of src whose flag changed reports
// as given on the command line: flags override the config file.
func Overlay[T Coordinator | Agent](dst *T, src *T, changed func(flag string) bool) {
	dv, sv := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for _, k := range Keys(dst) {
		if k.Flag != "" && changed(k.Flag) {
			dv.FieldByName(k.Field).Set(sv.FieldByName(k.Field))
		}
	}
}

// Source says where a setting's effective value came from.
type Source string

// The sources of a setting, weakest first.
const (
	SourceDefault Source = "default"
	SourceFile    Source = "file"
	SourceFlag    Source = "flag"
)

// Setting is one effective setting as --print-config shows it.
type Setting struct {
	Key    string `json:"key"`
	Value  any    `json:"value"`
	Source Source `json:"source"`
	Flag   string `json:"flag,omitempty"`
}

// Effective lists every setting of cfg with its value and source: the
// flag when changed reports it, else the file when fileKeys holds it,
// else the default.
func Effective[T Coordinator | Agent](cfg *T, fileKeys map[string]bool, changed func(flag string) bool) []Setting {
	v := reflect.ValueOf(cfg).Elem()
	var out []Setting
	for _, k := range Keys(cfg) {
		s := Setting{Key: k.Name, Value: v.FieldByName(k.Field).Interface(), Source: SourceDefault, Flag: k.Flag}
		switch {
		case k.Flag != "" && changed(k.Flag):
			s.Source = SourceFlag
		case fileKeys[k.Name]:
			s.Source = SourceFile
		}
		out = append(out, s)
	}
	return out
}

// FormatValue renders a setting's value for a table: durations and
// strings as written in a file, lists comma-separated, labels as k=v.
func FormatValue(v any) string {
	switch x := v.(type) {
	case string:
		if x == "" {
			return `""`
		}
		return x
	case Duration:
		return x.String()
	case []string:
		if len(x) == 0 {
			return "[]"
		}
		return strings.Join(x, ",")
	case map[string]string:
		if len(x) == 0 {
			return "{}"
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			keys[i] = k + "=" + x[k]
		}
		return strings.Join(keys, ",")
	}
	return fmt.Sprint(v)
}

// FileKeys returns the top-level keys a config file sets. Call it after
// the file loaded, so its errors are already reported with their line.
func FileKeys(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out, nil
}
