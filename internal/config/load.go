// Package config holds each role's configuration: explicit structs with
// defaults, strict loading (an unknown key is an error naming the key, the
// file and the line) and validation that reports every problem at once.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// FileVersion is the only config file version this build reads.
const FileVersion = 1

// Problems collects every validation failure so the operator can fix them
// all in one pass.
type Problems []string

// Addf records a problem with the setting named key.
func (p *Problems) Addf(key, format string, args ...any) {
	*p = append(*p, key+": "+fmt.Sprintf(format, args...))
}

// Err returns nil when there are no problems, else one error listing them.
func (p Problems) Err(what string) error {
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("invalid %s configuration:\n  - %s", what, strings.Join(p, "\n  - "))
}

// Duration is a time.Duration read from JSON as text such as "30s".
type Duration time.Duration

// UnmarshalJSON reads duration text.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration in quotes, such as \"30s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %v", s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes duration text.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// String writes the duration as a config file would: "24h" rather than
// "24h0m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// loadStrict decodes a JSON config file into v, refusing unknown keys, a
// missing or wrong version, and trailing data, with file:line in every
// error.
func loadStrict(path string, v any, version *int) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %s", path, describeJSONError(data, dec, err))
	}
	if dec.More() {
		return fmt.Errorf("%s:%d: unexpected data after the configuration object", path, lineAt(data, int(dec.InputOffset())))
	}
	if *version != FileVersion {
		return fmt.Errorf("%s: \"version\" is %d; this Ward reads version %d (add \"version\": %d)", path, *version, FileVersion, FileVersion)
	}
	return nil
}

func describeJSONError(data []byte, dec *json.Decoder, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("line %d: %v", lineAt(data, int(syn.Offset)), syn)
	case errors.As(err, &typ):
		return fmt.Sprintf("line %d: key %q: want %s, got %s", lineAt(data, int(typ.Offset)), typ.Field, typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		key := strings.TrimPrefix(err.Error(), "json: unknown field ")
		off := int(dec.InputOffset())
		if i := keyOffset(data, key); i >= 0 {
			off = i
		}
		return fmt.Sprintf("line %d: unknown key %s (check its spelling; unknown keys are refused so a typo never turns a setting off)", lineAt(data, off), key)
	}
	return fmt.Sprintf("line %d: %v", lineAt(data, int(dec.InputOffset())), err)
}

func lineAt(data []byte, off int) int {
	if off > len(data) {
		off = len(data)
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// keyOffset finds where quotedKey appears as an object key in data.
func keyOffset(data []byte, quotedKey string) int {
	for from := 0; ; {
		i := bytes.Index(data[from:], []byte(quotedKey))
		if i < 0 {
			return -1
		}
		i += from
		rest := bytes.TrimLeft(data[i+len(quotedKey):], " \t\r\n")
		if len(rest) > 0 && rest[0] == ':' {
			return i
		}
		from = i + len(quotedKey)
	}
}
