package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// DecodeJSON is the one decoder of every JSON body the API accepts. It
// decodes exactly one JSON value into v and refuses, with an
// INVALID_ARGUMENT error that says where:
//   - bytes that are not UTF-8 (encoding/json would silently replace them
//     with U+FFFD, so a name or label could change on the way in);
//   - anything but white space after the value (a second object, garbage);
//   - a key v does not have (a typo must not turn a setting off);
//   - a value of the wrong type.
func DecodeJSON(data []byte, v any) error {
	return decodeJSON(data, v, false)
}

// decodeJSON is DecodeJSON; allowUnknown accepts keys v does not have, for
// session frames, where a newer peer may send fields an older one ignores.
func decodeJSON(data []byte, v any, allowUnknown bool) error {
	if !utf8.Valid(data) {
		return Errorf(CodeInvalidArgument, "send UTF-8 text: JSON is UTF-8 by definition",
			"the JSON body is not valid UTF-8 (first bad byte at offset %d)", invalidUTF8At(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if !allowUnknown {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return Errorf(CodeInvalidArgument, "send one JSON object as the API reference describes", "%s", describeJSONError(err, dec))
	}
	if tok, err := dec.Token(); err != io.EOF {
		what := fmt.Sprintf("%v", tok)
		if err != nil {
			what = "bytes that are not JSON"
		}
		return Errorf(CodeInvalidArgument, "send exactly one JSON object, with nothing after it",
			"the JSON body goes on after its value: %s at offset %d", what, dec.InputOffset())
	}
	return nil
}

// invalidUTF8At is the offset of the first byte that is not UTF-8.
func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(data)
}

// describeJSONError names the key, the expected type or the offset.
func describeJSONError(err error, dec *json.Decoder) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("the body is not valid JSON at offset %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("key %q must be %s, not a JSON %s", typ.Field, typ.Type, typ.Value)
		}
		return fmt.Sprintf("the body must be %s, not a JSON %s", typ.Type, typ.Value)
	case errors.Is(err, io.EOF):
		return "the body is empty; it must hold a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the body ends in the middle of its JSON value"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Sprintf("unknown key %s (check its spelling)", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return fmt.Sprintf("the body is not valid at offset %d: %v", dec.InputOffset(), err)
}
