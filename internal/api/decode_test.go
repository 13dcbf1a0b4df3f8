package api

import (
	"strings"
	"testing"
)

func TestDecodeJSON(t *testing.T) {
	type body struct {
		Name  string            `json:"name"`
		Count int               `json:"count"`
		Tags  map[string]string `json:"tags,omitempty"`
	}
	tests := []struct {
		name    string
		in      string
		want    body
		wantErr string // substring of the message; "" for success
	}{
		{"one object", `{"name":"a","count":2}`, body{Name: "a", Count: 2}, ""},
		{"white space around it", " \n{\"name\":\"a\"}\n\t ", body{Name: "a"}, ""},
		{"UTF-8 text kept", `{"name":"größe ✓"}`, body{Name: "größe ✓"}, ""},
		{"a second object after it", `{"name":"a"}{"name":"b"}`, body{}, "goes on after its value"},
		{"garbage after it", `{"name":"a"} x`, body{}, "goes on after its value"},
		{"a number after it", `{"name":"a"} 7`, body{}, "goes on after its value"},
		{"invalid UTF-8 in a string", "{\"name\":\"a\xff\"}", body{}, "not valid UTF-8 (first bad byte at offset 10)"},
		{"invalid UTF-8 in a key", "{\"na\xc3me\":\"a\"}", body{}, "not valid UTF-8"},
		{"an overlong encoding", "{\"name\":\"\xc0\xaf\"}", body{}, "not valid UTF-8"},
		{"unknown key", `{"name":"a","cuont":2}`, body{}, `unknown key "cuont"`},
		{"wrong type", `{"count":"two"}`, body{}, `key "count" must be int`},
		{"not an object", `[1,2]`, body{}, "must be api.body"},
		{"empty", ``, body{}, "the body is empty"},
		{"cut short", `{"name":"a"`, body{}, "ends in the middle"},
		{"syntax error", `{"name" "a"}`, body{}, "not valid JSON at offset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got body
			err := DecodeJSON([]byte(tt.in), &got)
			if tt.wantErr == "" {
				if err != nil || got.Name != tt.want.Name || got.Count != tt.want.Count {
					t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			if CodeOf(err) != CodeInvalidArgument {
				t.Fatalf("code %s, want INVALID_ARGUMENT", CodeOf(err))
			}
		})
	}
}

// TestDecodeFrameAllowsNewFields: session frames ignore fields a newer
// peer added, but refuse invalid UTF-8 and trailing data like API bodies.
func TestDecodeFrameAllowsNewFields(t *testing.T) {
	var h Heartbeat
	if err := DecodeFrame(FrameHeartbeat, []byte(`{"running":2,"from_the_future":true}`), &h); err != nil || h.Running != 2 {
		t.Fatalf("got %+v, %v", h, err)
	}
	var hello Hello
	if err := DecodeFrame(FrameHello, []byte("{\"hostname\":\"n\xff\"}"), &hello); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("invalid UTF-8 in a frame: %v", err)
	}
	if err := DecodeFrame(FrameHeartbeat, []byte(`{"running":2}{}`), &h); err == nil {
		t.Fatal("trailing data in a frame was accepted")
	}
}
